"""The usage flusher (cutover.usage.flusher): batches written off the loop, a failing store
keeps its batch, the deprecation log's lines, retention once an hour."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cutover.request.clients import ClientId
from cutover.request.usage import OVERFLOW, UsageRecorder, UsageRow
from cutover.usage.flusher import UsageFlusher
from cutover.usage.sqlite_store import SqliteUsageStore
from cutover.usage.store import UsageStoreError
from tests.clocks import Clock
from tests.usage.rows import DAY1

pytestmark = pytest.mark.anyio
SUNSET = datetime(2027, 6, 1, tzinfo=UTC)
A, B = ClientId("partner-a", None), ClientId("h:" + "1" * 32, "0042")


class FlakyStore:
    """A store that fails while ``failing``; records what it was given."""

    def __init__(self) -> None:
        self.failing = False
        self.batches: list[list[UsageRow]] = []
        self.deleted: list[str] = []

    def write(self, rows: list[UsageRow]) -> None:
        if self.failing:
            raise UsageStoreError("disk full")
        self.batches.append([UsageRow(*vars_of(r)) for r in rows])

    def delete_before(self, day: str) -> int:
        self.deleted.append(day)
        return 0

    def close(self) -> None:
        pass


def vars_of(row: UsageRow) -> tuple:
    return (row.migration, row.client, row.method, row.prefix, row.day, row.count,
            row.brownouts, row.first_seen, row.last_seen, row.user_agent, row.hint)  # fmt: skip


def flusher(recorder: UsageRecorder, store, clock: Clock, **options) -> UsageFlusher:
    return UsageFlusher(recorder, store, interval=1.0, retention_days=90,
                        sunsets=lambda name: SUNSET, clock=clock, **options)  # fmt: skip


def call(recorder: UsageRecorder, client: ClientId, now: float) -> None:
    recorder.record("trade-engine", client, "GET", "/api/v1", b"sdk", False, now, "/api/v1/x")


async def test_a_flush_writes_the_counts(tmp_path: Path) -> None:
    clock, recorder = Clock(DAY1 + 10), UsageRecorder()
    store = SqliteUsageStore(tmp_path / "usage.sqlite3")
    call(recorder, A, DAY1 + 1)
    call(recorder, A, DAY1 + 2)
    call(recorder, B, DAY1 + 3)
    assert await flusher(recorder, store, clock).flush()
    assert {r.client: r.count for r in store.rows_since(None, 0)} == {A.key: 2, B.key: 1}


async def test_a_failing_store_keeps_the_batch() -> None:
    clock, recorder, store = Clock(DAY1 + 10), UsageRecorder(), FlakyStore()
    usage = flusher(recorder, store, clock)
    store.failing = True
    call(recorder, A, DAY1 + 1)
    assert not await usage.flush()
    call(recorder, A, DAY1 + 2)
    call(recorder, B, DAY1 + 3)
    assert not await usage.flush()
    store.failing = False
    assert await usage.flush()
    (batch,) = store.batches
    assert {r.client: r.count for r in batch} == {A.key: 2, B.key: 1}
    assert await usage.flush()  # nothing left over: nothing written twice
    assert len(store.batches) == 1


async def test_the_kept_batch_is_bounded() -> None:
    clock, recorder, store = Clock(DAY1 + 10), UsageRecorder(), FlakyStore()
    usage = flusher(recorder, store, clock, max_keys=2)
    store.failing = True
    for index in range(4):
        call(recorder, ClientId(f"c{index}", None), DAY1 + index)
        await usage.flush()
    store.failing = False
    await usage.flush()
    assert {r.client: r.count for r in store.batches[0]} == {"c0": 1, "c1": 1, OVERFLOW: 2}


async def test_the_deprecation_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    clock, recorder, store = Clock(DAY1), UsageRecorder(), FlakyStore()
    usage = flusher(recorder, store, clock)
    caplog.set_level(logging.WARNING, "cutover.deprecation")
    for offset in (0, 60, 1800, 3599):
        clock.now = DAY1 + offset
        call(recorder, A, clock.now)
        await usage.flush()
    call(recorder, B, clock.now)
    await usage.flush()
    lines = [r for r in caplog.records if r.name == "cutover.deprecation"]
    assert [r.client for r in lines] == [A.key, B.key]  # type: ignore[attr-defined]
    first = lines[0]
    assert first.endpoint == "GET /api/v1/x"  # type: ignore[attr-defined]
    assert first.sunset == "2027-06-01"  # type: ignore[attr-defined]
    assert "client=partner-a" in first.getMessage()
    assert "…0042" in lines[1].getMessage()
    clock.now = DAY1 + 3600  # an hour after A's line
    call(recorder, A, clock.now)
    await usage.flush()
    assert len([r for r in caplog.records if r.name == "cutover.deprecation"]) == 3


async def test_retention_runs_once_an_hour() -> None:
    clock, recorder, store = Clock(DAY1), UsageRecorder(), FlakyStore()
    usage = flusher(recorder, store, clock)
    await usage.flush()
    clock.now += 3599
    await usage.flush()
    clock.now += 1
    await usage.flush()
    assert len(store.deleted) == 2
    assert store.deleted[0] == datetime.fromtimestamp(DAY1 - 90 * 86400, UTC).date().isoformat()
