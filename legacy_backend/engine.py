import math
import zlib
from collections.abc import Mapping, Sequence
from datetime import date

from cutover_demo.new_backend.schemas import (
    TRADING_DAYS,
    BacktestMetrics,
    SymbolProfile,
    check_range,
    resolve_params,
)

ENGINE_NAME = "legacy-simulator"

_MASK64 = (1 << 64) - 1
_SQRT3 = math.sqrt(3.0)


def _splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _unit(h: int) -> float:
    return (h >> 11) * 2.0**-53


def _noise(x: int) -> float:
    h = _splitmix64(x)
    total = 0.0
    for shift in (0, 16, 32, 48):
        total += (((h >> shift) & 0xFFFF) + 0.5) / 65536.0
    return (total - 2.0) * _SQRT3


def symbol_profile(symbol: str) -> SymbolProfile:
    seed = zlib.crc32(symbol.upper().encode())
    u_price, u_drift, u_vol = (_unit(_splitmix64(seed ^ (k << 40))) for k in (1, 2, 3))
    return SymbolProfile(
        seed=seed,
        initial_price=20.0 + 480.0 * u_price,
        daily_drift=(-0.05 + 0.25 * u_drift) / TRADING_DAYS,
        daily_volatility=(0.15 + 0.30 * u_vol) / math.sqrt(TRADING_DAYS),
    )


def business_day_ordinals(start: date, end: date) -> list[int]:
    return [o for o in range(start.toordinal(), end.toordinal() + 1) if (o - 1) % 7 < 5]


def generate_prices(symbol: str, start: date, end: date) -> list[float]:
    profile = symbol_profile(symbol)
    base = profile.seed << 32
    step_mean = profile.daily_drift - 0.5 * profile.daily_volatility**2
    prices: list[float] = []
    log_level = 0.0
    for k, ordinal in enumerate(business_day_ordinals(start, end)):
        if k:
            log_level += step_mean + profile.daily_volatility * _noise(base + ordinal)
        prices.append(profile.initial_price * math.exp(log_level))
    return prices


def _prefix_sums(values: Sequence[float]) -> list[float]:
    sums = [0.0]
    total = 0.0
    for value in values:
        total += value
        sums.append(total)
    return sums


def _sma_crossover(prices: Sequence[float], fast: int, slow: int) -> list[int]:
    sums = _prefix_sums(prices)
    positions = [0] * len(prices)
    for t in range(slow - 1, len(prices)):
        fast_avg = (sums[t + 1] - sums[t + 1 - fast]) / fast
        slow_avg = (sums[t + 1] - sums[t + 1 - slow]) / slow
        positions[t] = 1 if fast_avg > slow_avg else 0
    return positions


def _rsi_mean_reversion(
    prices: Sequence[float], period: int, lower: float, upper: float
) -> list[int]:
    changes = [prices[t] - prices[t - 1] for t in range(1, len(prices))]
    gains = _prefix_sums([max(c, 0.0) for c in changes])
    losses = _prefix_sums([max(-c, 0.0) for c in changes])
    positions = [0] * len(prices)
    state = 0
    for t in range(period, len(prices)):
        gain = gains[t] - gains[t - period]
        total = gain + (losses[t] - losses[t - period])
        rsi = 100.0 * gain / total if total > 0 else 50.0
        if rsi < lower:
            state = 1
        elif rsi > upper:
            state = 0
        positions[t] = state
    return positions


def _momentum(prices: Sequence[float], lookback: int, threshold: float) -> list[int]:
    positions = [0] * len(prices)
    for t in range(lookback, len(prices)):
        positions[t] = 1 if prices[t] / prices[t - lookback] - 1.0 > threshold else 0
    return positions


def _positions(strategy: str, prices: Sequence[float], params: Mapping[str, float]) -> list[int]:
    if strategy == "sma_crossover":
        return _sma_crossover(prices, int(params["fast"]), int(params["slow"]))
    if strategy == "rsi_mean_reversion":
        return _rsi_mean_reversion(prices, int(params["period"]), params["lower"], params["upper"])
    if strategy == "momentum":
        return _momentum(prices, int(params["lookback"]), params["threshold"])
    return [1] * len(prices)


def evaluate(prices: Sequence[float], positions: Sequence[int], capital: float) -> BacktestMetrics:
    n = len(prices)
    if n < 2:
        raise ValueError("at least two prices are required")
    returns = [positions[t - 1] * (prices[t] / prices[t - 1] - 1.0) for t in range(1, n)]

    equity = peak = capital
    max_drawdown = 0.0
    for r in returns:
        equity *= 1.0 + r
        peak = max(peak, equity)
        max_drawdown = max(max_drawdown, 1.0 - equity / peak)

    mean = sum(returns) / len(returns)
    std = 0.0
    if len(returns) > 1:
        std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))

    trades = wins = 0
    entry: int | None = None
    for t in range(n):
        holding = t < n - 1 and positions[t] == 1
        if holding and entry is None:
            entry = t
        elif not holding and entry is not None:
            trades += 1
            wins += prices[t] > prices[entry]
            entry = None

    growth = equity / capital
    return BacktestMetrics(
        total_return=growth - 1.0,
        annualized_return=growth ** (TRADING_DAYS / len(returns)) - 1.0,
        volatility=std * math.sqrt(TRADING_DAYS),
        sharpe_ratio=mean / std * math.sqrt(TRADING_DAYS) if std > 0 else 0.0,
        max_drawdown=max_drawdown,
        total_trades=trades,
        win_rate=wins / trades if trades else 0.0,
    )


def run_backtest(
    strategy: str,
    *,
    symbol: str = "AAPL",
    start: date = date(2020, 1, 1),
    end: date = date(2023, 12, 31),
    initial_capital: float = 100_000.0,
    params: Mapping[str, float] | None = None,
) -> BacktestMetrics:
    resolved = resolve_params(strategy, params)
    check_range(start, end)
    prices = generate_prices(symbol, start, end)
    return evaluate(prices, _positions(strategy, prices, resolved), initial_capital)
