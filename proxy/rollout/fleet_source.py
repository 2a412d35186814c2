"""The embedded source over the whole fleet (``state.backend: redis``): every host publishes
its counters each guard interval (``fleet_counters.py``), and the leader judges the sum of
every host's increase over the window, so a fault seen only in one host's share of the
traffic is still caught.

The leader folds each reading of every host into one running total that only grows
(``FleetTotal``); the embedded source's window works on that total as on one host's
counters. When Redis cannot be reached, the total grows by this host's counters alone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from cutover.request.metrics import Metrics
from cutover.rollout.fleet_counters import CountersUnavailable
from cutover.rollout.sources import CounterSnapshot, EmbeddedSource, Key, read_counters

logger = logging.getLogger("cutover.guard")

_ZERO = CounterSnapshot({}, {}, {}, {})


class Publisher(Protocol):
    """What the source needs of ``FleetCounters``."""

    host: str
    boot: str

    async def publish(self, snapshot: CounterSnapshot) -> None: ...

    async def read_all(self) -> dict[str, CounterSnapshot]: ...


@dataclass
class _Seen:
    snapshot: CounterSnapshot
    at: float  # the reading's monotonic time


def _add(total: dict[Key, float], latest: dict[Key, float], base: dict[Key, float]) -> None:
    for key, value in latest.items():
        # Never negative: two workers of one host publishing out of order go down a little.
        total[key] = total.get(key, 0.0) + max(0.0, value - base.get(key, 0.0))


class FleetTotal:
    """The fleet's counters as one cumulative snapshot, from successive readings of every
    host's. At each reading a host adds what it counted since its previous one; a host seen
    for the first time adds nothing (its counts may be older than any window); a host that
    restarted (a new ``boot``) adds everything its new run counted; a host gone adds
    nothing more. A host not seen for ``forget`` seconds is forgotten (then new again)."""

    def __init__(self, forget: float) -> None:
        self.forget = forget
        self.requests: dict[Key, float] = {}
        self.errors: dict[Key, float] = {}
        self.buckets: dict[Key, list[float]] = {}
        self.shadow: dict[Key, float] = {}
        self._hosts: dict[str, _Seen] = {}

    @property
    def hosts(self) -> list[str]:
        """The hosts counted, by name."""
        return sorted(self._hosts)

    def add(self, now: float, readings: Mapping[str, CounterSnapshot]) -> CounterSnapshot:
        """Fold in one reading of every host that could be read; the total since."""
        for host, seen in list(self._hosts.items()):
            if seen.at < now - self.forget:
                del self._hosts[host]
        for host, latest in readings.items():
            previous = self._hosts.get(host)
            self._hosts[host] = _Seen(latest, now)
            if previous is None:
                continue
            base = previous.snapshot if previous.snapshot.boot == latest.boot else _ZERO
            _add(self.requests, latest.requests, base.requests)
            _add(self.errors, latest.errors, base.errors)
            _add(self.shadow, latest.shadow, base.shadow)
            for key, counts in latest.buckets.items():
                was = base.bucket(key)
                total = self.buckets.setdefault(key, [0.0] * len(counts))
                for i, (a, b) in enumerate(zip(counts, was, strict=True)):
                    total[i] += max(0.0, a - b)
        return CounterSnapshot(
            dict(self.requests),
            dict(self.errors),
            {key: list(counts) for key, counts in self.buckets.items()},
            dict(self.shadow),
        )


class FleetSource(EmbeddedSource):
    """``EmbeddedSource`` judging the fleet: ``share`` publishes this host's counters (every
    host, every guard tick, leading or not); ``observe`` reads every host's."""

    def __init__(self, metrics: Metrics, window: float, counters: Publisher) -> None:
        super().__init__(metrics, window)
        self.counters = counters
        self.total = FleetTotal(forget=window)
        self._local: CounterSnapshot | None = None  # this tick's, read by ``share``
        self._problems: dict[str, str] = {}  # what failed, by operation: warned once

    async def read_local(self) -> CounterSnapshot:
        # Every host reads its counters each interval now, not only the leader: in a thread,
        # so a registry of many migrations (100 ms for 200) does not stall the requests.
        return await asyncio.to_thread(read_counters, self.metrics)

    async def share(self) -> None:
        """Publish this host's counters; a failure is logged (once), never raised."""
        self._local = local = replace(await self.read_local(), boot=self.counters.boot)
        try:
            await self.counters.publish(local)
        except CountersUnavailable as exc:
            self._problem("publish", f"this host's counters were not published: {exc}")
        else:
            self._solved("publish", "this host's counters are published again")

    async def latest(self, now: float) -> CounterSnapshot:
        local, self._local = self._local, None
        if local is None:
            local = replace(await self.read_local(), boot=self.counters.boot)
        try:
            readings = await self.counters.read_all()
        except CountersUnavailable as exc:
            self._problem("read", f"judging this host's traffic alone: {exc}")
            readings = {}
        else:
            self._solved("read", "judging the fleet's traffic again")
        readings[self.counters.host] = local  # this tick's, fresher than the published one
        return self.total.add(now, readings)

    def _problem(self, operation: str, message: str) -> None:
        if operation not in self._problems:
            logger.warning("fleet counters: %s", message)
        self._problems[operation] = message

    def _solved(self, operation: str, message: str) -> None:
        if self._problems.pop(operation, None) is not None:
            logger.info("fleet counters: %s", message)
