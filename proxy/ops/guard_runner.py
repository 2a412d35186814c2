"""The guard loop as a task of one process: built for the settings with its metrics source
(embedded or Prometheus) and memory scraper, started, and stopped with the source's
clients closed. A reload builds the next guard before stopping the running one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from cutover.config import Settings
from cutover.request.metrics import Metrics
from cutover.rollout.coordination import Coordinator
from cutover.rollout.guard import Guard, Share
from cutover.rollout.guard_status import EvaluationFile
from cutover.rollout.judge import Judge
from cutover.rollout.registry import Migrations
from cutover.rollout.source_prometheus import PrometheusSource
from cutover.rollout.sources import EmbeddedSource, MemoryScraper

if TYPE_CHECKING:  # imported when used: redis-py only with the redis backend
    from cutover.rollout.fleet_source import FleetSource

# The gateway's logger, as before the guard's task had a module of its own.
logger = logging.getLogger("cutover.gateway")

Closer = Callable[[], Awaitable[None]]
# Guard intervals a host's published counters last: one missed publication is not a host gone.
PUBLISHED_FOR = 3


def build_judges(settings: Settings, migrations: Migrations) -> list[Judge]:
    """One judge per configured migration, with its thresholds."""
    read = {name for name, backend in settings.backends.items() if backend.metrics_url}
    return [
        Judge(
            config.guard.over(settings.guard),
            migrations.get(config.name),
            source=config.source,
            target=config.target,
            memory=config.target in read,
            shadow=settings.shadow if settings.mirrored(config) else None,
        )
        for config in settings.migration_list
    ]


@dataclass
class BuiltGuard:
    """A guard not running yet, and what to close when it stops."""

    guard: Guard
    closers: list[Closer] = field(default_factory=list)

    async def discard(self) -> None:
        for close in self.closers:
            await close()


class GuardRunner:
    def __init__(
        self,
        migrations: Migrations,
        metrics: Metrics,
        coordination: Coordinator,
        evaluations: EvaluationFile,
        *,
        side_transport: httpx.AsyncBaseTransport | None = None,
        redis: Any = None,
        host: str = "",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``side_transport`` replaces the client of scrapes and Prometheus queries (tests);
        ``redis``: the state backend's async client (redis backend), where the embedded
        source's counters are shared by the fleet, this host publishing as ``host``."""
        self.migrations = migrations
        self.metrics = metrics
        self.coordination = coordination
        self.evaluations = evaluations
        self.side_transport = side_transport
        self.redis = redis
        self.host = host
        self.clock = clock
        self.monotonic = monotonic
        self.guard: Guard | None = None  # the last one started
        self._task: asyncio.Task[Any] | None = None
        self._closers: list[Closer] = []

    def build(self, settings: Settings) -> BuiltGuard:
        """The guard for ``settings``; not running yet."""
        config = settings.guard
        urls = {
            name: backend.metrics_url
            for name, backend in settings.backends.items()
            if backend.metrics_url
        }
        ca_files = {name: backend.ca_file for name, backend in settings.backends.items()}
        scraper = (
            MemoryScraper(urls, self.metrics, transport=self.side_transport, ca_files=ca_files)
            if urls
            else None
        )
        closers: list[Closer] = []
        share: Share | None = None
        if config.source == "prometheus":
            source = PrometheusSource(config, transport=self.side_transport, clock=self.clock)
            observe, closers = source.observe, [source.aclose]
        elif self.redis is not None:
            fleet = self._fleet_source(settings)
            observe, share = fleet.observe, fleet.share
        else:
            observe = EmbeddedSource(self.metrics, config.window).observe
        if scraper is not None:
            closers.append(scraper.aclose)
        guard = Guard(
            config,
            self.migrations,
            build_judges(settings, self.migrations),
            self.metrics,
            observe,
            scraper=scraper,
            memory_from_scrape=config.source == "embedded",
            coordination=self.coordination,
            shared=self.evaluations,
            share=share,
            monotonic=self.monotonic,
        )
        return BuiltGuard(guard, closers)

    def _fleet_source(self, settings: Settings) -> FleetSource:
        """The embedded source over every host's counters, published in Redis."""
        from cutover.rollout.fleet_counters import FleetCounters, counters_boot, counters_host
        from cutover.rollout.fleet_source import FleetSource
        from cutover.rollout.redis_keys import RedisKeys

        processes = self.metrics.multiprocess_dir
        counters = FleetCounters(
            self.redis, RedisKeys(settings.state.key_prefix),
            counters_host(settings.state.host_id, self.host, processes),
            ttl=PUBLISHED_FOR * settings.guard.interval, boot=counters_boot(processes),
        )  # fmt: skip
        return FleetSource(self.metrics, settings.guard.window, counters)

    def start(self, built: BuiltGuard) -> Guard:
        assert self._task is None, "one guard loop at a time"
        self.guard = built.guard
        self._closers = built.closers
        self._task = asyncio.create_task(built.guard.run())
        return built.guard

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        closers, self._closers = self._closers, []
        for close in closers:
            try:
                await close()
            except Exception:
                logger.exception("closing the guard's metrics source failed")
