"""The fleet's usage store (``state.backend: redis``): every host adds its batches to the
same counts, so one report covers the fleet. A hash per (migration, day) under
``state.key_prefix`` holds a JSON row per (client, method, prefix); a batch is one Lua
script (atomic, as SQLite's transaction is). Each hash expires ``retention_days`` after its
day, and a sorted set indexes the hashes by day for the report."""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Callable
from typing import Any

import redis

from cutover.request.usage import UsageRow
from cutover.usage.store import DAY, UsageStoreError

SEPARATOR = "\x1f"  # between client, method and prefix in a hash field (none contains it)
# ARGV[1]: rows [index into KEYS, field, count, brownouts, first, last, agent, hint];
# ARGV[2]: days [index into KEYS, index member, day's Unix time, expire at]. KEYS[1]: the index.
UPSERT = """
local rows = cjson.decode(ARGV[1])
local days = cjson.decode(ARGV[2])
for _, r in ipairs(rows) do
  local key = KEYS[r[1]]
  local v = {r[3], r[4], r[5], r[6], r[7], r[8]}
  local old = redis.call('HGET', key, r[2])
  if old then
    local o = cjson.decode(old)
    v[1] = o[1] + r[3]
    v[2] = o[2] + r[4]
    v[3] = math.min(o[3], r[5])
    if r[6] >= o[4] then
      if r[7] == cjson.null then v[5] = o[5] end
    else
      v[4] = o[4]
      v[5] = o[5]
    end
    if o[6] ~= cjson.null then v[6] = o[6] end
  end
  redis.call('HSET', key, r[2], cjson.encode(v))
end
for _, d in ipairs(days) do
  redis.call('ZADD', KEYS[1], d[3], d[2])
  redis.call('EXPIREAT', KEYS[d[1]], d[4])
end
return #rows
"""


def day_start(day: str) -> int:
    return calendar.timegm(time.strptime(day, "%Y-%m-%d"))


class RedisUsageStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        retention_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``client``: a synchronous client (every call runs in a thread)."""
        self.client = client
        self.prefix = prefix
        self.retention = retention_days * DAY
        self.clock = clock
        self.index = f"{prefix}:usage:days"
        self._script = client.register_script(UPSERT)

    def _hash(self, member: str) -> str:
        return f"{self.prefix}:usage:{member}"

    def write(self, rows: list[UsageRow]) -> None:
        keys: dict[str, int] = {}  # index member → position in KEYS (1: the index)
        encoded, days = [], []
        for r in rows:
            member = f"{r.migration}:{r.day}"
            if member not in keys:
                keys[member] = len(keys) + 2
                start = day_start(r.day)
                days.append([keys[member], member, start, int(start + DAY + self.retention)])
            field = SEPARATOR.join((r.client, r.method, r.prefix))
            encoded.append([keys[member], field, r.count, r.brownouts, r.first_seen,
                            r.last_seen, r.user_agent, r.hint])  # fmt: skip
        if not rows:
            return
        try:
            self._script(
                keys=[self.index, *(self._hash(member) for member in keys)],
                args=[json.dumps(encoded), json.dumps(days)],
            )
        except redis.RedisError as exc:
            raise UsageStoreError(f"writing usage to Redis: {exc}") from exc

    def rows_since(self, migration: str | None, since: float) -> list[UsageRow]:
        first_day = int(since // DAY * DAY)
        try:
            members = [m.decode() for m in self.client.zrangebyscore(self.index, first_day, "+inf")]
            if migration is not None:
                members = [m for m in members if m.rpartition(":")[0] == migration]
            pipe = self.client.pipeline(transaction=False)
            for member in members:
                pipe.hgetall(self._hash(member))
            hashes: list[dict[bytes, bytes]] = pipe.execute()
        except redis.RedisError as exc:
            raise UsageStoreError(f"reading usage from Redis: {exc}") from exc
        rows = []
        for member, fields in zip(members, hashes, strict=True):
            name, _, day = member.rpartition(":")
            for field, value in fields.items():
                row = _row(name, day, field.decode(), json.loads(value))
                if row.last_seen >= since:
                    rows.append(row)
        return rows

    def clients_since(self, since_seconds: float) -> dict[str, int]:
        clients: dict[str, set[str]] = {}
        for row in self.rows_since(None, self.clock() - since_seconds):
            clients.setdefault(row.migration, set()).add(row.client)
        return {migration: len(names) for migration, names in clients.items()}

    def delete_before(self, day: str) -> int:
        """The hashes expire by themselves; this drops their index entries."""
        try:
            return int(self.client.zremrangebyscore(self.index, "-inf", f"({day_start(day)}"))
        except redis.RedisError as exc:
            raise UsageStoreError(f"retention in Redis: {exc}") from exc

    def close(self) -> None:
        self.client.close()


def _row(migration: str, day: str, field: str, value: list[Any]) -> UsageRow:
    client, method, prefix = field.split(SEPARATOR)
    count, brownouts, first_seen, last_seen, agent, hint = value
    return UsageRow(migration, client, method, prefix, day, int(count), int(brownouts),
                    float(first_seen), float(last_seen), agent, hint)  # fmt: skip
