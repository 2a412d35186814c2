"""The usage flusher: every ``usage.flush_interval`` it swaps the recorder's rows out and
writes them to the store in a thread (never on the event loop), emits the warning stage's
``cutover.deprecation`` lines the recorder decided, and once an hour drops the rows past
``usage.retention_days``. A write that fails keeps its batch, merged into the next one
(bounded as the recorder is), so an outage of the store loses no count until that bound."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from cutover.request.usage import (
    MAX_KEYS,
    DeprecationNotice,
    RowKey,
    UsageRecorder,
    UsageRow,
    merge_into,
)
from cutover.usage.store import DAY, UsageStore, UsageStoreError, day_of

logger = logging.getLogger("cutover.usage")
deprecation_log = logging.getLogger("cutover.deprecation")
RETENTION_EVERY = 3600.0  # seconds between two retention passes

Sunsets = Callable[[str], datetime | None]  # a migration's sunset_at, if it has one


class UsageFlusher:
    def __init__(
        self,
        recorder: UsageRecorder,
        store: UsageStore,
        *,
        interval: float,
        retention_days: int,
        sunsets: Sunsets,
        clock: Callable[[], float] = time.time,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.recorder = recorder
        self.store = store
        self.interval = interval
        self.retention_days = retention_days
        self.sunsets = sunsets
        self.clock = clock
        self.max_keys = max_keys
        self.pending: dict[RowKey, UsageRow] = {}  # drained but not written yet
        self.failing = False
        self.writes = 0  # batches written: a reader of the store knows when to look again
        self._retained_at: float | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                # A bug must not end the counting: the next flush tries again.
                logger.exception("usage: a flush failed")

    async def flush(self) -> bool:
        """Write what was counted since the last flush; False if the store failed (the
        batch is kept for the next one)."""
        now = self.clock()
        overflowed = self.recorder.overflowed
        overflowed += merge_into(self.pending, self.recorder.drain(), self.max_keys)
        if overflowed:
            logger.warning(
                "usage: %d calls of clients beyond the %d tracked between flushes were counted "
                "as (overflow)", overflowed, self.max_keys,
            )  # fmt: skip
        self._log(self.recorder.drain_notices(now))
        written = await self._write()
        if written and (self._retained_at is None or now - self._retained_at >= RETENTION_EVERY):
            self._retained_at = now
            await self._retain(now)
        return written

    async def _write(self) -> bool:
        if not self.pending:
            return True
        batch = list(self.pending.values())
        try:
            await asyncio.to_thread(self.store.write, batch)
        except UsageStoreError as exc:
            if not self.failing:
                logger.error("usage: the counts are kept in memory until the store answers: %s",
                             exc)  # fmt: skip
            self.failing = True
            return False
        if self.failing:
            logger.warning("usage: the store answers again; the counts kept are written")
        self.failing = False
        self.pending = {}
        self.writes += 1
        return True

    async def _retain(self, now: float) -> None:
        oldest = day_of(now - self.retention_days * DAY)
        try:
            removed = await asyncio.to_thread(self.store.delete_before, oldest)
        except UsageStoreError as exc:
            logger.error("usage: retention failed (tried again in an hour): %s", exc)
            return
        if removed:
            logger.info("usage: %d rows from before %s removed (retention)", removed, oldest)

    def _log(self, notices: list[DeprecationNotice]) -> None:
        for notice in notices:
            sunset = self.sunsets(notice.migration)
            sunset_text = sunset.date().isoformat() if sunset is not None else "none"
            client = notice.client if notice.hint is None else f"{notice.client} (…{notice.hint})"
            endpoint = f"{notice.method} {notice.path or notice.prefix}"
            deprecation_log.warning(
                "deprecated API called: migration=%s client=%s endpoint=%r sunset=%s "
                "user_agent=%r", notice.migration, client, endpoint, sunset_text,
                notice.user_agent,
                extra={"migration": notice.migration, "client": notice.client,
                       "client_hint": notice.hint, "endpoint": endpoint, "sunset": sunset_text,
                       "user_agent": notice.user_agent},
            )  # fmt: skip

    async def aclose(self) -> None:
        """The last flush (at shutdown), then the store closed."""
        await self.flush()
        await asyncio.to_thread(self.store.close)
