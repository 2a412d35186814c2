"""The dual-run sample log: one JSON object per line, rotated by size.

Writing never blocks the event loop: ``write`` hands the record to one writer thread (so
lines keep their order), which serialises it and appends it to the file.

Several worker processes (``cutover run --workers N``) share one log. Each appends under an
``flock`` on a lock file beside the log (concurrent-log-handler), and whichever finds the
file over its size rotates it while holding that lock; every writer checks, under the same
lock, that the file it holds open is still the log (not a backup renamed away by another
process) and reopens it if not. So lines from every worker land in one log, in one set of
backups, and none is written into a file another worker just rotated. (One file per worker
would need a report that merges them and a bound on files left by dead workers' pids.)
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from concurrent_log_handler import ConcurrentRotatingFileHandler

from cutover.shadow.compare import Diff
from cutover.vocabulary import ShadowResult

DEFAULT_MAX_BYTES = 10 * 2**20
DEFAULT_BACKUPS = 3
# Records waiting for the writer thread; past this (a disk that stalls) they are dropped
# and counted rather than held in memory without bound.
MAX_QUEUED = 1024
REDACTED = "[redacted]"
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


class RecordKind(StrEnum):
    """The log's two kinds of line: a mismatch sample (it has no ``kind`` field) and the
    counts a run writes when it stops (``"kind": "totals"``)."""

    MISMATCH = "mismatch"
    TOTALS = "totals"


class _JsonLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # ASCII only, so sizes in characters are sizes in bytes.
        return json.dumps(record.msg, ensure_ascii=True, separators=(",", ":"), default=str)


class ShadowLog:
    """Appends records to ``path``; once it holds ``max_bytes`` or more, the file moves to
    ``path.1`` (and ``path.1`` to ``path.2``, …), keeping ``backups`` old files (a file
    can pass ``max_bytes`` by its last line). Safe to share between processes. Write
    errors (a full disk) are reported on stderr and never raised."""

    def __init__(
        self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        # A handler never rotates when either is zero: the log would be unbounded.
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        if backups < 1:
            raise ValueError(f"backups must be at least 1, got {backups}")
        self.path = path
        with open(path, "a", encoding="utf-8"):  # an unusable path fails here, at start-up
            pass
        self._handler = ConcurrentRotatingFileHandler(
            str(path), maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(_JsonLine())
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue(MAX_QUEUED)
        # Straight to the handler, not through a logger: a logging.config.dictConfig() call
        # (uvicorn makes one at start) resets the handlers of loggers it did not name.
        self._writer = logging.handlers.QueueListener(self._queue, self._handler)
        self._writer.start()
        self.dropped = 0
        self._closed = False

    def __enter__(self) -> ShadowLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def write(self, record: Mapping[str, Any]) -> None:
        """Queue one record for the writer thread; never blocks."""
        if self._closed:
            raise ValueError(f"the shadow log {self.path} is closed")
        try:
            self._queue.put_nowait(logging.makeLogRecord({"msg": record, "levelno": logging.INFO}))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                print(f"cutover: the shadow log {self.path} is not keeping up; "
                      "dropping samples", file=sys.stderr)  # fmt: skip

    def close(self) -> None:
        """Write what is queued, then close. Blocks until then: call it off the loop."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        self._handler.close()


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (name, REDACTED if name.lower() in SENSITIVE_HEADERS else value) for name, value in headers
    ]


def redact_query(query: str) -> str:
    """Keep the parameter names of a query string, never their values (they may be tokens)."""
    if not query:
        return ""
    names = (part.partition("=")[0] for part in query.split("&") if part)
    return "&".join(f"{name}={REDACTED}" for name in names)


def totals_record(*, totals: Mapping[str, int], run_id: str, at: float) -> dict[str, Any]:
    """The line a run writes when it stops, so a report counts its matches after the last
    mismatch too."""
    return {
        "kind": RecordKind.TOTALS,
        "at": iso_utc(at),
        "run_id": run_id,
        "totals": _counts(totals),
    }


def _counts(totals: Mapping[str, int]) -> dict[str, int]:
    """Every result's count, zero for those not seen."""
    return {result: int(totals.get(result, 0)) for result in ShadowResult}


def iso_utc(at: float) -> str:
    """Unix seconds as ``2024-05-01T12:00:00.123Z``."""
    stamp = datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.removesuffix("+00:00") + "Z"


def mismatch_record(
    *,
    migration: str,
    route: str,
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    primary_backend: str,
    primary_status: int,
    shadow_backend: str,
    shadow_status: int,
    diffs: Sequence[Diff],
    totals: Mapping[str, int],
    run_id: str,
    at: float,
) -> dict[str, Any]:
    """One log line. ``totals`` are the process's running counts when the line is written and
    ``run_id`` names the process run, so a report can recover the comparison counts."""
    return {
        "at": iso_utc(at),
        "run_id": run_id,
        "migration": migration,
        "route": route,
        "method": method,
        "path": path,
        "query": query,
        "headers": [list(pair) for pair in redact_headers(headers)],
        "primary": {"backend": primary_backend, "status": primary_status},
        "shadow": {"backend": shadow_backend, "status": shadow_status},
        "diffs": [asdict(diff) for diff in diffs],
        "totals": _counts(totals),
    }
