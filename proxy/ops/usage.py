"""The usage report's part of one process: the store (opened in a thread), the flusher task
fed by the proxy app's recorder, and the report documents the admin API serves. The store
is opened at start when some migration has a deprecation (so a bad ``usage.path`` stops
the start), else when a reload adds one or a report is asked for: a config that counts
nothing creates no database. With ``--workers N`` each worker flushes into the same store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cutover.config import Settings
from cutover.request.usage import UsageRecorder
from cutover.usage.flusher import UsageFlusher
from cutover.usage.opening import open_usage_store
from cutover.usage.report import parse_since, usage_document
from cutover.usage.store import UsageStore

logger = logging.getLogger("cutover.usage")
WEEK = 7 * 86400.0
COUNTED_EVERY = 1.0  # seconds between two looks at whether the store was written
RECOUNT_EVERY = 60.0  # seconds after which the week's clients are counted anyway


class UnknownMigrationUsage(LookupError):
    """No migration of that name is configured."""


class NoDeprecation(LookupError):
    """The migration has no deprecation: none of its calls are counted."""


class UsageService:
    def __init__(
        self,
        settings: Callable[[], Settings],
        recorder: UsageRecorder,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``settings``: the running settings (a reload changes them)."""
        self.settings = settings
        self.recorder = recorder
        self.clock = clock
        self.store: UsageStore | None = None
        self.flusher: UsageFlusher | None = None
        self._task: asyncio.Task[None] | None = None
        self._counting: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        # Each migration's clients of the last 7 days, counted off the loop every
        # COUNTED_EVERY seconds, so a status document reads it from memory.
        self.week_clients: dict[str, int] = {}

    async def start(self) -> None:
        """Open the store and start flushing if some migration has a deprecation
        (UsageStoreError if the store cannot be opened); a reload calls it again."""
        if self._task is None and any(m.deprecation for m in self.settings().migration_list):
            await self._open()
            self._flush()

    async def _open(self) -> UsageStore:
        async with self._opening:
            if self.store is None:
                self.store = await asyncio.to_thread(
                    open_usage_store, self.settings(), clock=self.clock
                )
            return self.store

    def _flush(self) -> None:
        settings = self.settings()
        assert self.store is not None
        self.flusher = UsageFlusher(
            self.recorder, self.store, interval=settings.usage.flush_interval,
            retention_days=settings.usage.retention_days, sunsets=self._sunset, clock=self.clock,
        )  # fmt: skip
        self._task = asyncio.create_task(self.flusher.run())
        self._counting = asyncio.create_task(self._count_clients())

    async def _count_clients(self) -> None:
        """Each migration's clients of the week, counted again after the flusher wrote (or
        once a minute, as the week's window slides), never on the loop."""
        counted_at, writes = -RECOUNT_EVERY, -1
        while True:
            flusher = self.flusher
            now = self.clock()
            if flusher is not None and (
                flusher.writes != writes or now - counted_at >= RECOUNT_EVERY
            ):
                counted_at, writes = now, flusher.writes
                found = await self.clients_since(WEEK)  # one read for every migration
                self.week_clients = {} if found is None else {
                    config.name: found.get(config.name, 0)
                    for config in self.settings().migration_list
                    if config.deprecation
                }  # fmt: skip
            await asyncio.sleep(COUNTED_EVERY)

    def clients_7d(self, migration: str) -> int | None:
        """The clients that called the migration's from in the last 7 days, as last counted
        (None: not counted yet)."""
        return self.week_clients.get(migration)

    def _sunset(self, migration: str) -> datetime | None:
        config = self.settings().migration(migration)
        if config is None or not config.deprecation:
            return None
        return config.deprecation.sunset_at

    async def stop(self) -> None:
        """The last counts written, the store closed."""
        tasks = [task for task in (self._task, self._counting) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.flusher is not None:
            await self.flusher.aclose()
        elif self.store is not None:
            await asyncio.to_thread(self.store.close)

    async def report(self, migration: str | None, since: str) -> dict[str, Any]:
        """The usage document; SinceError, UnknownMigrationUsage, NoDeprecation, or
        UsageStoreError from the store."""
        seconds = parse_since(since)
        if migration is not None:
            config = self.settings().migration(migration)
            if config is None:
                raise UnknownMigrationUsage(f"no migration named {migration!r}")
            if not config.deprecation:
                raise NoDeprecation(
                    f"migration {migration!r} has no deprecation: its calls are not counted"
                )
        store = await self._open()
        rows = await asyncio.to_thread(store.rows_since, migration, self.clock() - seconds)
        return usage_document(migration, since, rows)

    async def clients_since(self, since_seconds: float) -> dict[str, int] | None:
        """For the status page, by migration: None until the store is open, or when it
        cannot be read."""
        if self.store is None:
            return None
        try:
            return await asyncio.to_thread(self.store.clients_since, since_seconds)
        except Exception as exc:
            logger.warning("usage: clients not counted: %s", exc)
            return None
