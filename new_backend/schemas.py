from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, field_validator

StrategyName = Literal["sma_crossover", "rsi_mean_reversion", "momentum", "buy_and_hold"]
Params = dict[str, int | float]

TRADING_DAYS = 252
MAX_RANGE_DAYS = 18_263
MIN_BUSINESS_DAYS = 2


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: type[int] | type[float]
    default: int | float
    minimum: int | float
    maximum: int | float
    description: str

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": "integer" if self.kind is int else "number",
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "description": self.description,
        }


@dataclass(frozen=True)
class StrategySpec:
    name: StrategyName
    description: str
    params: tuple[ParamSpec, ...] = ()
    less_than: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "params": [p.as_dict() for p in self.params],
        }


STRATEGIES: Mapping[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec(
            "sma_crossover",
            "Long while the fast simple moving average is above the slow one.",
            (
                ParamSpec("fast", int, 10, 1, 250, "Fast moving-average window in days."),
                ParamSpec("slow", int, 30, 2, 500, "Slow moving-average window in days."),
            ),
            (("fast", "slow"),),
        ),
        StrategySpec(
            "rsi_mean_reversion",
            "Buy when RSI falls below `lower`, sell when it rises above `upper`.",
            (
                ParamSpec("period", int, 14, 2, 100, "RSI look-back window in days."),
                ParamSpec("lower", float, 30.0, 0.0, 100.0, "Oversold entry threshold."),
                ParamSpec("upper", float, 70.0, 0.0, 100.0, "Overbought exit threshold."),
            ),
            (("lower", "upper"),),
        ),
        StrategySpec(
            "momentum",
            "Long while the trailing return over `lookback` days exceeds `threshold`.",
            (
                ParamSpec("lookback", int, 20, 1, 250, "Trailing-return window in days."),
                ParamSpec("threshold", float, 0.0, -1.0, 1.0, "Minimum trailing return."),
            ),
        ),
        StrategySpec("buy_and_hold", "Buy on the first day and hold to the end."),
    )
}


@dataclass(frozen=True)
class FieldError:
    loc: str
    message: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.message}"


class RequestError(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors

    @classmethod
    def single(cls, loc: str, message: str) -> Self:
        return cls([FieldError(loc, message)])


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    strategy: StrategyName
    params: dict[str, FiniteFloat] = Field(default_factory=dict)
    symbol: str = Field(default="AAPL", pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,14}$")
    start: date = date(2020, 1, 1)
    end: date = date(2023, 12, 31)
    initial_capital: FiniteFloat = Field(default=100_000.0, gt=0, le=1e12)

    @field_validator("symbol")
    @classmethod
    def _upper_symbol(cls, value: str) -> str:
        return value.upper()


def resolve_params(strategy: str, params: Mapping[str, float] | None = None) -> Params:
    spec = STRATEGIES.get(strategy)
    if spec is None:
        raise RequestError.single("strategy", f"unknown strategy {strategy!r}")
    given = dict(params or {})
    errors = [
        FieldError(f"params.{name}", f"unknown parameter for {strategy}")
        for name in given
        if name not in {p.name for p in spec.params}
    ]
    resolved: Params = {}
    for p in spec.params:
        value = given.get(p.name, p.default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(FieldError(f"params.{p.name}", "must be a number"))
            continue
        if p.kind is int:
            if not float(value).is_integer():
                errors.append(FieldError(f"params.{p.name}", "must be an integer"))
                continue
            value = int(value)
        else:
            value = float(value)
        if not p.minimum <= value <= p.maximum:
            errors.append(
                FieldError(f"params.{p.name}", f"must be between {p.minimum} and {p.maximum}")
            )
            continue
        resolved[p.name] = value
    for low, high in spec.less_than:
        if low in resolved and high in resolved and not resolved[low] < resolved[high]:
            errors.append(FieldError(f"params.{low}", f"must be less than {high}"))
    if errors:
        raise RequestError(errors)
    return resolved


def count_business_days(start: date, end: date) -> int:
    if end < start:
        return 0
    days = (end - start).days + 1
    weeks, rest = divmod(days, 7)
    first = start.weekday()
    return weeks * 5 + sum(1 for k in range(rest) if (first + k) % 7 < 5)


def check_range(start: date, end: date) -> None:
    if end < start:
        raise RequestError.single("end", "must not be before start")
    if (end - start).days > MAX_RANGE_DAYS:
        raise RequestError.single("end", "date range must not exceed 50 years")
    if count_business_days(start, end) < MIN_BUSINESS_DAYS:
        raise RequestError.single(
            "end", f"date range must span at least {MIN_BUSINESS_DAYS} business days"
        )


def parse_backtest_request(body: bytes) -> tuple[BacktestRequest, Params]:
    try:
        request = BacktestRequest.model_validate_json(body)
    except ValidationError as exc:
        raise RequestError(
            [
                FieldError(".".join(str(part) for part in err["loc"]) or "body", err["msg"])
                for err in exc.errors(include_url=False, include_input=False)
            ]
        ) from None
    check_range(request.start, request.end)
    return request, resolve_params(request.strategy, request.params)


@dataclass(frozen=True)
class SymbolProfile:
    seed: int
    initial_price: float
    daily_drift: float
    daily_volatility: float


@dataclass(frozen=True)
class BacktestMetrics:
    total_return: float
    annualized_return: float
    volatility: float
    sharpe_ratio: float
    max_drawdown: float
    total_trades: int
    win_rate: float
