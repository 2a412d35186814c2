"""The guard loop as a task of one process: built for the settings with its metrics source
(embedded or Prometheus) and memory scraper, started, and stopped with the source's
clients closed. A reload builds the next guard before stopping the running one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from cutover.config import Settings
from cutover.request.metrics import Metrics
from cutover.rollout.coordination import Coordinator
from cutover.rollout.guard import Guard
from cutover.rollout.guard_status import EvaluationFile
from cutover.rollout.judge import Judge
from cutover.rollout.registry import Migrations
from cutover.rollout.source_prometheus import PrometheusSource
from cutover.rollout.sources import EmbeddedSource, MemoryScraper

# The gateway's logger, as before the guard's task had a module of its own.
logger = logging.getLogger("cutover.gateway")

Closer = Callable[[], Awaitable[None]]


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
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``side_transport`` replaces the client of scrapes and Prometheus queries (tests)."""
        self.migrations = migrations
        self.metrics = metrics
        self.coordination = coordination
        self.evaluations = evaluations
        self.side_transport = side_transport
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
        closers: list[Closer]
        if config.source == "prometheus":
            source = PrometheusSource(config, transport=self.side_transport, clock=self.clock)
            observe, closers = source.observe, [source.aclose]
        else:
            observe, closers = EmbeddedSource(self.metrics, config.window).observe, []
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
            monotonic=self.monotonic,
        )
        return BuiltGuard(guard, closers)

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
