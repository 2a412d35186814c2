"""Usage rows for the store and report tests."""

from __future__ import annotations

import time

from cutover.request.usage import UsageRow
from cutover.usage.store import DAY, day_of

# Midnight UTC, five days ago: Redis expires a day's counts by the real clock.
DAY1 = (time.time() // DAY - 5) * DAY
SECRET = "sk_live_4f9a8b7c6d5e0042"


def row(
    client: str = "partner-a",
    *,
    migration: str = "trade-engine",
    method: str = "GET",
    prefix: str = "/api/v1",
    day: str | None = None,  # default: the day of last
    count: int = 1,
    brownouts: int = 0,
    first: float = DAY1 + 10,
    last: float = DAY1 + 10,
    agent: str | None = "sdk/1.0",
    hint: str | None = None,
) -> UsageRow:
    day = day or day_of(last)
    return UsageRow(migration, client, method, prefix, day, count, brownouts, first, last, agent,
                    hint)  # fmt: skip
