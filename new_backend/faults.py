import random
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, field_validator

from cutover_demo.new_backend.schemas import FieldError, RequestError

ResultField = Literal[
    "total_return",
    "annualized_return",
    "volatility",
    "sharpe_ratio",
    "max_drawdown",
    "total_trades",
    "win_rate",
]
SkewFactor = Annotated[FiniteFloat, Field(ge=-1.0, le=10.0)]

MAX_LEAKED_BYTES = 1 << 30


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    error_rate: FiniteFloat = Field(default=0.0, ge=0.0, le=1.0)
    extra_latency_ms: int = Field(default=0, ge=0, le=60_000)
    leak_kb_per_request: int = Field(default=0, ge=0, le=64 * 1024)
    skew: dict[ResultField, SkewFactor] = Field(default_factory=dict)
    # Only requests under this path (on segment boundaries, as the gateway matches a
    # migration's prefix) are faulted; None: every request.
    path_prefix: str | None = Field(default=None, max_length=1024)

    @field_validator("path_prefix")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    def applies_to(self, path: str) -> bool:
        prefix = self.path_prefix
        if prefix is None:
            return True
        return path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def parse_fault_config(body: bytes) -> FaultConfig:
    try:
        return FaultConfig.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise RequestError(
            [
                FieldError(".".join(str(part) for part in err["loc"]) or "body", err["msg"])
                for err in exc.errors(include_url=False, include_input=False)
            ]
        ) from None


class FaultInjector:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.config = FaultConfig()
        self._rng = rng or random.Random()
        self._leaked: list[bytearray] = []
        self._leaked_bytes = 0

    @property
    def leaked_buffers(self) -> int:
        return len(self._leaked)

    @property
    def leaked_bytes(self) -> int:
        return self._leaked_bytes

    def configure(self, config: FaultConfig) -> None:
        self.config = config

    def reset(self) -> None:
        self.config = FaultConfig()
        self._leaked.clear()
        self._leaked_bytes = 0

    def should_fail(self) -> bool:
        return self.config.error_rate > 0 and self._rng.random() < self.config.error_rate

    def leak(self) -> None:
        size = self.config.leak_kb_per_request * 1024
        if size and self._leaked_bytes + size <= MAX_LEAKED_BYTES:
            self._leaked.append(bytearray(size))
            self._leaked_bytes += size

    def skewed(self, result: dict[str, float | int]) -> dict[str, float | int]:
        skewed = dict(result)
        for name, factor in self.config.skew.items():
            value = skewed[name] * (1.0 + factor)
            skewed[name] = round(value) if isinstance(result[name], int) else value
        return skewed

    def snapshot(self) -> dict[str, object]:
        return {
            **self.config.model_dump(),
            "leaked_buffers": self.leaked_buffers,
            "leaked_bytes": self.leaked_bytes,
        }
