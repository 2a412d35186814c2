"""Counting the calls a deprecated API still gets, in memory on the request path: rows by
(migration, client, method, prefix, UTC day), swapped out by the usage flusher
(``cutover.usage.flusher``), which writes them to the store and emits the log lines this
module decides. Nothing here does I/O.

Between two flushes at most ``max_keys`` distinct rows are kept; the calls of any further
client are counted in their migration's ``(overflow)`` row, so no call goes uncounted and
memory stays bounded. The warning stage's log is decided here too: one line per client
per migration per ``log_interval`` (an hour)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from cutover.request.clients import ClientId
from cutover.types import RawHeaders

MAX_KEYS = 100_000
MAX_CLIENTS = 10_000
LOG_INTERVAL = 3600.0  # seconds between two log lines about one client of one migration
PRUNE_EVERY = 60.0  # seconds between forgetting the clients quiet for a log_interval
OVERFLOW = "(overflow)"
MAX_USER_AGENT = 256  # characters of the last user agent kept

RowKey = tuple[str, str, str, str, str]  # migration, client, method, prefix, day


@dataclass(slots=True)
class UsageRow:
    migration: str
    client: str
    method: str
    prefix: str
    day: str  # YYYY-MM-DD, UTC
    count: int
    brownouts: int
    first_seen: float  # Unix time
    last_seen: float
    user_agent: str | None
    hint: str | None

    @property
    def key(self) -> RowKey:
        return (self.migration, self.client, self.method, self.prefix, self.day)

    def merge(self, other: UsageRow) -> None:
        """Add ``other``'s calls (the same key) to this row."""
        self.count += other.count
        self.brownouts += other.brownouts
        self.first_seen = min(self.first_seen, other.first_seen)
        if other.last_seen >= self.last_seen:
            self.last_seen = other.last_seen
            self.user_agent = other.user_agent or self.user_agent
        self.hint = self.hint or other.hint


def merge_into(rows: dict[RowKey, UsageRow], batch: list[UsageRow], limit: int) -> int:
    """Add ``batch`` to ``rows``, keeping at most ``limit`` distinct keys (the rest go to
    their migration's overflow row); returns how many rows went to overflow."""
    overflowed = 0
    for row in batch:
        existing = rows.get(row.key)
        if existing is None and len(rows) >= limit and row.client != OVERFLOW:
            overflowed += 1
            row = UsageRow(row.migration, OVERFLOW, row.method, row.prefix, row.day, row.count,
                           row.brownouts, row.first_seen, row.last_seen, None, None)  # fmt: skip
            existing = rows.get(row.key)
        if existing is None:
            rows[row.key] = row
        else:
            existing.merge(row)
    return overflowed


@dataclass(frozen=True, slots=True)
class DeprecationNotice:
    """A line for the ``cutover.deprecation`` log: this client called this migration's
    ``from`` (the first call in the hour)."""

    migration: str
    client: str
    hint: str | None
    method: str
    prefix: str
    path: str
    user_agent: str | None
    at: float


class CountsDeprecated(Protocol):
    """``cutover_deprecated_requests_total``: ``Metrics.deprecated_request``."""

    def __call__(self, migration: str) -> None: ...


def user_agent(headers: RawHeaders) -> bytes | None:
    """A request's first User-Agent (lowercased ASGI names), as the usage count keeps it."""
    for name, value in headers:
        if name == b"user-agent":
            return value
    return None


class UsageRecorder:
    def __init__(
        self,
        counted: CountsDeprecated | None = None,
        *,
        max_keys: int = MAX_KEYS,
        max_clients: int = MAX_CLIENTS,
        log_interval: float = LOG_INTERVAL,
    ) -> None:
        """``max_clients``: distinct clients counted per migration per UTC day; the calls of
        any further one go to the migration's overflow row."""
        self.counted = counted
        self.max_keys = max_keys
        self.max_clients = max_clients
        self._clients: dict[str, set[str]] = {}  # by migration: today's clients
        self.log_interval = log_interval
        self.overflowed = 0  # calls counted as (overflow) since the last drain
        self.notices_dropped = 0
        self._rows: dict[RowKey, UsageRow] = {}
        self._logged: dict[tuple[str, str], float] = {}  # (migration, client): last line's time
        self._notices: list[DeprecationNotice] = []
        self._day = (-1, "")
        self._pruned_at = 0.0

    def record(
        self,
        migration: str,
        client: ClientId,
        method: str,
        prefix: str,
        user_agent: bytes | None,
        brownout: bool,
        now: float,
        path: str = "",
    ) -> None:
        if self.counted is not None:
            self.counted(migration)
        day = self._day[1] if self._day[0] == now // 86400 else self._day_of(now)
        agent = None if user_agent is None else user_agent[:MAX_USER_AGENT].decode("latin-1")
        known = self._clients.get(migration)
        if known is None:
            known = self._clients[migration] = set()
        who = client.key
        if who not in known:
            if len(known) >= self.max_clients:
                client = ClientId(OVERFLOW, None)
                who = OVERFLOW
            else:
                known.add(who)
        rows = self._rows
        key = (migration, who, method, prefix, day)
        row = rows.get(key)
        if row is None and len(rows) >= self.max_keys:
            self.overflowed += 1
            key = (migration, OVERFLOW, method, prefix, day)
            row = rows.get(key)
            client, agent = ClientId(OVERFLOW, None), None
        if row is None:
            rows[key] = UsageRow(migration, client.key, method, prefix, day, 1, int(brownout),
                                 now, now, agent, client.hint)  # fmt: skip
        else:
            row.count += 1
            row.brownouts += brownout
            if now >= row.last_seen:
                row.last_seen = now
                row.user_agent = agent or row.user_agent
        last = self._logged.get((migration, client.key))
        if last is None or now - last >= self.log_interval:  # else: logged within the hour
            self._notice(migration, client, method, prefix, path, agent, now)

    def _notice(
        self, migration: str, client: ClientId, method: str, prefix: str, path: str,
        agent: str | None, now: float,
    ) -> None:  # fmt: skip
        who = (migration, client.key)
        last = self._logged.get(who)
        if last is not None and now - last < self.log_interval:
            return
        if last is None and len(self._logged) >= self.max_keys:
            self.notices_dropped += 1
            return
        self._logged[who] = now
        notice = DeprecationNotice(migration, client.key, client.hint, method, prefix, path,
                                   agent, now)  # fmt: skip
        self._notices.append(notice)

    def _day_of(self, now: float) -> str:
        index = int(now // 86400)
        if self._day[0] != index:
            self._clients = {}  # a new day: every client is counted anew
            self._day = (index, time.strftime("%Y-%m-%d", time.gmtime(index * 86400)))
        return self._day[1]

    def drain(self) -> list[UsageRow]:
        """The rows counted since the last drain (the recorder starts over)."""
        rows, self._rows = self._rows, {}
        self.overflowed = 0
        return list(rows.values())

    def drain_notices(self, now: float) -> list[DeprecationNotice]:
        """The log lines decided since the last call; forgets clients quiet for an hour."""
        notices, self._notices = self._notices, []
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            horizon = now - self.log_interval
            self._logged = {who: at for who, at in self._logged.items() if at > horizon}
        return notices
