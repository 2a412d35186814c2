"""What the console's charts draw: every ``every`` seconds (10) the proxy's in-process
counters (``read_counters``: every worker's, summed) and each migration's weight, turned
into one ``Sample`` per interval: requests per second, error rate and p95 latency per
migration and backend. An hour of samples is kept, in memory; nothing is written."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cutover.request.metrics import Metrics
from cutover.rollout.sources import CounterSnapshot, Key, p95, read_counters

SAMPLE_EVERY = 10.0
KEPT_FOR = 3600.0

logger = logging.getLogger("cutover.console")


@dataclass(frozen=True, slots=True)
class Traffic:
    rps: float
    error_rate: float | None  # None: no request in the interval
    p95: float | None  # seconds


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # wall-clock Unix seconds, the interval's end
    weights: dict[str, float]  # by migration
    traffic: dict[Key, Traffic]  # by (migration, backend)


def between(before: CounterSnapshot, after: CounterSnapshot, seconds: float) -> dict[Key, Traffic]:
    """Each (migration, backend)'s traffic from ``before`` to ``after`` (a counter that
    went down, a restart, counts from zero)."""
    traffic = {}
    for key, total in after.requests.items():
        earlier = before.requests.get(key, 0.0)
        if total < earlier:
            earlier = 0.0
        requests = total - earlier
        errors = max(0.0, after.errors.get(key, 0.0) - before.errors.get(key, 0.0))
        now, then = after.bucket(key), before.bucket(key)
        if len(then) != len(now) or any(b < a for a, b in zip(then, now, strict=True)):
            then = [0.0] * len(now)
        latency = p95([b - a for a, b in zip(then, now, strict=True)]) if requests else None
        traffic[key] = Traffic(
            rps=requests / seconds,
            error_rate=errors / requests if requests else None,
            p95=latency,
        )
    return traffic


class Sampler:
    def __init__(
        self,
        metrics: Metrics,
        weights: Callable[[], dict[str, float]],
        *,
        every: float = SAMPLE_EVERY,
        kept_for: float = KEPT_FOR,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.weights = weights
        self.every = every
        self.clock = clock
        self.samples: deque[Sample] = deque(maxlen=max(1, int(kept_for / every)))
        self._last: tuple[float, CounterSnapshot] | None = None
        self._task: asyncio.Task[None] | None = None

    def take(self, snapshot: CounterSnapshot, at: float) -> Sample | None:
        """The interval since the previous snapshot as a sample (None for the first)."""
        last, self._last = self._last, (at, snapshot)
        if last is None or at <= last[0]:
            return None
        sample = Sample(at, self.weights(), between(last[1], snapshot, at - last[0]))
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        while True:
            try:
                # With several workers this reads every worker's metric files: not on the loop.
                snapshot = await asyncio.to_thread(read_counters, self.metrics)
                self.take(snapshot, self.clock())
            except Exception as exc:
                logger.warning("console: the counters were not sampled: %s", exc)
            await asyncio.sleep(self.every)

    def since(self, at: float) -> list[Sample]:
        return [sample for sample in self.samples if sample.at >= at]

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
