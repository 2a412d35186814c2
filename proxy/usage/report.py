"""The usage report: the clients still calling a migration's ``from`` since a time, each
with its calls, the calls that met a brownout, first and last seen, the last user agent
and the endpoints it calls; rendered as a table, CSV or JSON. The admin API builds the
JSON document (``usage_document``); ``cutover usage`` and ``?format=`` render it."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cutover.request.usage import UsageRow

_SINCE_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DEFAULT_SINCE = "7d"
COLUMNS = ("migration", "client", "hint", "calls", "brownouts", "first_seen", "last_seen",
           "user_agent", "endpoints")  # fmt: skip


class ReportFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


class SinceError(ValueError):
    """A ``since`` that is not a duration such as 7d."""


def parse_since(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` → seconds."""
    match = _SINCE_RE.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise SinceError(f"since must be a duration such as 7d, 12h or 30m, got {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


@dataclass
class ClientUsage:
    migration: str
    client: str
    hint: str | None
    calls: int = 0
    brownouts: int = 0
    first_seen: float = float("inf")
    last_seen: float = 0.0
    user_agent: str | None = None
    endpoints: set[str] = field(default_factory=set)

    def add(self, row: UsageRow) -> None:
        self.calls += row.count
        self.brownouts += row.brownouts
        self.first_seen = min(self.first_seen, row.first_seen)
        if row.last_seen >= self.last_seen:
            self.last_seen = row.last_seen
            self.user_agent = row.user_agent or self.user_agent
        self.hint = self.hint or row.hint
        self.endpoints.add(f"{row.method} {row.prefix}")

    def document(self) -> dict[str, Any]:
        return {
            "migration": self.migration,
            "client": self.client,
            "hint": self.hint,
            "calls": self.calls,
            "brownouts": self.brownouts,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "user_agent": self.user_agent,
            "endpoints": sorted(self.endpoints),
        }


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def summarize(rows: Iterable[UsageRow]) -> list[ClientUsage]:
    """One entry per (migration, client), the busiest first."""
    clients: dict[tuple[str, str], ClientUsage] = {}
    for row in rows:
        key = (row.migration, row.client)
        if key not in clients:
            clients[key] = ClientUsage(row.migration, row.client, row.hint)
        clients[key].add(row)
    return sorted(clients.values(), key=lambda c: (-c.calls, c.migration, c.client))


def usage_document(migration: str | None, since: str, rows: Iterable[UsageRow]) -> dict[str, Any]:
    """The report as the admin API answers it."""
    return {
        "migration": migration,
        "since": since,
        "clients": [client.document() for client in summarize(rows)],
    }


def render(document: dict[str, Any], form: ReportFormat) -> str:
    if form == ReportFormat.JSON:
        return json.dumps(document, indent=2)
    records = [_flat(client) for client in document["clients"]]
    if form == ReportFormat.CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([record[c] for c in COLUMNS] for record in records)
        return out.getvalue()
    if not records:
        scope = document["migration"] or "any migration"
        return f"no client called the old API of {scope} since {document['since']}"
    widths = {c: max(len(c), *(len(r[c]) for r in records)) for c in COLUMNS}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in COLUMNS).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS).rstrip() for r in records]
    return "\n".join(lines)


def _flat(client: dict[str, Any]) -> dict[str, str]:
    return {
        column: " ".join(value) if isinstance(value, list) else "" if value is None else str(value)
        for column, value in client.items()
        if column in COLUMNS
    }
