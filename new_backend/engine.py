import math
import zlib
from collections.abc import Mapping
from datetime import date

import numpy as np
import numpy.typing as npt

from cutover_demo.new_backend.schemas import (
    TRADING_DAYS,
    BacktestMetrics,
    SymbolProfile,
    check_range,
    resolve_params,
)

ENGINE_NAME = "trade-engine"

FloatArray = npt.NDArray[np.float64]
UIntArray = npt.NDArray[np.uint64]

_SQRT3 = math.sqrt(3.0)


def _splitmix64(x: UIntArray) -> UIntArray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _noise(x: UIntArray) -> FloatArray:
    h = _splitmix64(x)
    u0, u1, u2, u3 = (
        (((h >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.float64) + 0.5) / 65536.0
        for shift in (0, 16, 32, 48)
    )
    return (u0 + u1 + u2 + u3 - 2.0) * _SQRT3


def symbol_profile(symbol: str) -> SymbolProfile:
    seed = zlib.crc32(symbol.upper().encode())
    keys = np.array([seed ^ (k << 40) for k in (1, 2, 3)], dtype=np.uint64)
    u_price, u_drift, u_vol = (_splitmix64(keys) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return SymbolProfile(
        seed=seed,
        initial_price=20.0 + 480.0 * float(u_price),
        daily_drift=(-0.05 + 0.25 * float(u_drift)) / TRADING_DAYS,
        daily_volatility=(0.15 + 0.30 * float(u_vol)) / math.sqrt(TRADING_DAYS),
    )


def business_day_ordinals(start: date, end: date) -> npt.NDArray[np.int64]:
    ordinals = np.arange(start.toordinal(), end.toordinal() + 1, dtype=np.int64)
    return ordinals[(ordinals - 1) % 7 < 5]


def generate_prices(symbol: str, start: date, end: date) -> FloatArray:
    profile = symbol_profile(symbol)
    ordinals = business_day_ordinals(start, end)[1:].astype(np.uint64)
    z = _noise(np.uint64(profile.seed << 32) + ordinals)
    step_mean = profile.daily_drift - 0.5 * profile.daily_volatility**2
    steps = step_mean + profile.daily_volatility * z
    log_levels = np.concatenate(([0.0], np.cumsum(steps)))
    return profile.initial_price * np.exp(log_levels)


def _prefix_sums(values: FloatArray) -> FloatArray:
    return np.concatenate(([0.0], np.cumsum(values)))


def _sma_crossover(prices: FloatArray, fast: int, slow: int) -> FloatArray:
    sums = _prefix_sums(prices)
    t = np.arange(slow - 1, len(prices))
    fast_avg = (sums[t + 1] - sums[t + 1 - fast]) / fast
    slow_avg = (sums[t + 1] - sums[t + 1 - slow]) / slow
    positions = np.zeros(len(prices))
    positions[t] = fast_avg > slow_avg
    return positions


def _rsi_mean_reversion(prices: FloatArray, period: int, lower: float, upper: float) -> FloatArray:
    changes = np.diff(prices)
    gains = _prefix_sums(np.maximum(changes, 0.0))
    losses = _prefix_sums(np.maximum(-changes, 0.0))
    t = np.arange(period, len(prices))
    gain = gains[t] - gains[t - period]
    total = gain + (losses[t] - losses[t - period])
    rsi = np.divide(100.0 * gain, total, out=np.full(len(t), 50.0), where=total > 0)
    events = np.where(rsi < lower, 1, np.where(rsi > upper, -1, 0))
    last_event = np.maximum.accumulate(np.where(events != 0, np.arange(len(t)), -1))
    positions = np.zeros(len(prices))
    positions[t] = (last_event >= 0) & (events[np.maximum(last_event, 0)] == 1)
    return positions


def _momentum(prices: FloatArray, lookback: int, threshold: float) -> FloatArray:
    positions = np.zeros(len(prices))
    positions[lookback:] = prices[lookback:] / prices[: len(prices) - lookback] - 1.0 > threshold
    return positions


def _positions(strategy: str, prices: FloatArray, params: Mapping[str, float]) -> FloatArray:
    if strategy == "sma_crossover":
        return _sma_crossover(prices, int(params["fast"]), int(params["slow"]))
    if strategy == "rsi_mean_reversion":
        return _rsi_mean_reversion(prices, int(params["period"]), params["lower"], params["upper"])
    if strategy == "momentum":
        return _momentum(prices, int(params["lookback"]), params["threshold"])
    return np.ones(len(prices))


def evaluate(prices: FloatArray, positions: FloatArray, capital: float) -> BacktestMetrics:
    if len(prices) < 2:
        raise ValueError("at least two prices are required")
    returns = positions[:-1] * (prices[1:] / prices[:-1] - 1.0)
    equity = np.cumprod(np.concatenate(([capital], 1.0 + returns)))
    drawdowns = 1.0 - equity / np.maximum.accumulate(equity)

    std = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    mean = float(returns.mean())

    held = np.concatenate(([0.0], positions[:-1], [0.0]))
    edges = np.diff(held)
    entries = np.flatnonzero(edges == 1)
    exits = np.flatnonzero(edges == -1)
    trades = len(entries)
    wins = int(np.count_nonzero(prices[exits] > prices[entries]))

    growth = float(equity[-1]) / capital
    return BacktestMetrics(
        total_return=growth - 1.0,
        annualized_return=growth ** (TRADING_DAYS / len(returns)) - 1.0,
        volatility=std * math.sqrt(TRADING_DAYS),
        sharpe_ratio=mean / std * math.sqrt(TRADING_DAYS) if std > 0 else 0.0,
        max_drawdown=float(drawdowns.max()),
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
