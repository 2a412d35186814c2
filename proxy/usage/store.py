"""What every usage store offers (``sqlite_store``, ``redis_store``): a batch written in
one transaction, rows read since a time, retention. Synchronous: the flusher and the admin
API call them in a thread, never on the event loop."""

from __future__ import annotations

import time
from typing import Protocol

from cutover.request.usage import UsageRow

DAY = 86400.0


class UsageStoreError(Exception):
    """The store could not be read or written (the batch is kept for the next try)."""


def day_of(now: float) -> str:
    """The UTC day of Unix time ``now``, as the rows name it (YYYY-MM-DD)."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


class UsageStore(Protocol):
    def write(self, rows: list[UsageRow]) -> None:
        """Add the batch's counts to the stored rows, all or nothing."""

    def rows_since(self, migration: str | None, since: float) -> list[UsageRow]:
        """The rows (of ``migration``, or every one) with a call at or after Unix time
        ``since``."""

    def clients_since(self, since_seconds: float) -> dict[str, int]:
        """By migration, how many clients called its ``from`` in the last ``since_seconds``
        (a migration without a call is not in it): one read for every migration."""

    def delete_before(self, day: str) -> int:
        """Drop the rows of days before ``day``; how many went."""

    def close(self) -> None: ...
