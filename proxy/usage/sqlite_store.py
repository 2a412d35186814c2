"""The embedded usage store: one SQLite database (stdlib ``sqlite3``) in WAL mode, so the
report reads while a flush writes, and every worker of one host can write to it (each
waits up to ``BUSY_TIMEOUT`` for the others). One table, a row per (migration, client,
method, prefix, day); a batch is one transaction of upserts."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cutover.request.usage import UsageRow
from cutover.usage.store import UsageStoreError

BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's
SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    migration TEXT NOT NULL,
    client TEXT NOT NULL,
    method TEXT NOT NULL,
    prefix TEXT NOT NULL,
    day TEXT NOT NULL,
    count INTEGER NOT NULL,
    brownouts INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    user_agent TEXT,
    hint TEXT,
    PRIMARY KEY (migration, client, method, prefix, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_last_seen ON usage (migration, last_seen);
"""
# Every SET expression reads the stored row as it was before the update.
UPSERT = """
INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (migration, client, method, prefix, day) DO UPDATE SET
    count = count + excluded.count,
    brownouts = brownouts + excluded.brownouts,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen),
    user_agent = CASE WHEN excluded.last_seen >= last_seen
        THEN coalesce(excluded.user_agent, user_agent) ELSE user_agent END,
    hint = coalesce(hint, excluded.hint)
"""
COLUMNS = "migration, client, method, prefix, day, count, brownouts, first_seen, last_seen, "
COLUMNS += "user_agent, hint"


class SqliteUsageStore:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        """Open (or create) the database; UsageStoreError if it cannot be."""
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()  # one connection, used from the flusher's threads
        try:
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise UsageStoreError(f"usage.path: cannot open {path}: {exc}") from None

    def write(self, rows: list[UsageRow]) -> None:
        values = [
            (r.migration, r.client, r.method, r.prefix, r.day, r.count, r.brownouts,
             r.first_seen, r.last_seen, r.user_agent, r.hint)
            for r in rows
        ]  # fmt: skip
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(UPSERT, values)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise UsageStoreError(f"writing {self.path}: {exc}") from exc

    def rows_since(self, migration: str | None, since: float) -> list[UsageRow]:
        query = f"SELECT {COLUMNS} FROM usage WHERE last_seen >= ?"
        arguments: tuple[object, ...] = (since,)
        if migration is not None:
            query += " AND migration = ?"
            arguments = (since, migration)
        return [UsageRow(*row) for row in self._read(query, arguments)]

    def clients_since(self, since_seconds: float) -> dict[str, int]:
        query = ("SELECT migration, count(DISTINCT client) FROM usage WHERE last_seen >= ? "
                 "GROUP BY migration")  # fmt: skip
        rows = self._read(query, (self.clock() - since_seconds,))
        return {str(migration): int(count) for migration, count in rows}  # type: ignore[call-overload]

    def delete_before(self, day: str) -> int:
        with self._lock:
            try:
                return self._db.execute("DELETE FROM usage WHERE day < ?", (day,)).rowcount
            except sqlite3.Error as exc:
                raise UsageStoreError(f"retention in {self.path}: {exc}") from exc

    def _read(self, query: str, arguments: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._db.execute(query, arguments).fetchall()
            except sqlite3.Error as exc:
                raise UsageStoreError(f"reading {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
