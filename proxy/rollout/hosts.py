"""The fleet's hosts as they announce themselves in Redis: every host writes its record (id,
addresses, version, when it started, when it was last seen) every ``state.poll`` seconds to
a key that expires after a few polls, and adds its id to the set of hosts. A host that dies
stops writing, its key expires, and the next reading drops it from the set."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from cutover.rollout.redis_documents import UNREACHABLE
from cutover.rollout.redis_keys import RedisKeys

logger = logging.getLogger("cutover.state")

HOST_TTL_POLLS = 3  # a host that missed this many beats in a row is gone
WILDCARDS = frozenset({"", "0.0.0.0", "::"})

# KEYS: the host's key, the set of hosts. ARGV: the host's id. Drops the id only if the key
# is still gone: the host may have written again since it was read.
FORGET_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.call('SREM', KEYS[2], ARGV[1]) end
return 0
"""


def cutover_version() -> str:
    """The installed ``cutover`` distribution's version."""
    try:
        return importlib.metadata.version("cutover")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def address(host: str, port: int) -> str:
    """``host:port`` as another machine would reach it: a wildcard bind names this host."""
    if host in WILDCARDS:
        host = socket.gethostname()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HostRecordError(ValueError):
    """A host's key holds something other than a host record."""


@dataclass(frozen=True, slots=True)
class HostRecord:
    id: str
    proxy: str  # host:port of the proxy listener
    admin: str  # host:port of the admin API
    version: str
    started_at: float  # wall clock, seconds
    last_seen: float

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> HostRecord:
        try:
            data = json.loads(raw)
            return cls(
                id=str(data["id"]), proxy=str(data["proxy"]), admin=str(data["admin"]),
                version=str(data["version"]), started_at=float(data["started_at"]),
                last_seen=float(data["last_seen"]),
            )  # fmt: skip
        except (ValueError, TypeError, KeyError) as exc:
            raise HostRecordError(f"not a host record: {exc!r}") from None


class HostRegistry:
    def __init__(
        self,
        keys: RedisKeys,
        client: aioredis.Redis,
        me: HostRecord,
        *,
        poll: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``me``: this host's record (its ``last_seen`` is set at every beat)."""
        self.keys = keys
        self.client = client
        self.me = me
        self.poll = poll
        self.ttl_ms = max(1, round(poll * HOST_TTL_POLLS * 1000))
        self.clock = clock
        self._forget = client.register_script(FORGET_SCRIPT)

    def now(self) -> HostRecord:
        """This host's record as of now: what it knows of itself without Redis."""
        return dataclasses.replace(self.me, last_seen=self.clock())

    async def beat(self) -> None:
        """Write this host's record once (raises one of UNREACHABLE when Redis is not)."""
        record = self.now()
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.host(record.id), record.to_json(), px=self.ttl_ms)
            pipe.sadd(self.keys.hosts, record.id)
            await pipe.execute()

    async def run(self) -> None:
        """Beat every ``poll`` seconds; an unreachable Redis is logged once, and retried."""
        reachable = True
        while True:
            try:
                await self.beat()
            except UNREACHABLE as exc:
                if reachable:
                    logger.warning("the host record of %s is not written: %s", self.me.id, exc)
                reachable = False
            else:
                if not reachable:
                    logger.info("the host record of %s is written again", self.me.id)
                reachable = True
            await asyncio.sleep(self.poll)

    async def live(self) -> list[HostRecord]:
        """Every host whose record has not expired, by id; the expired are dropped from the
        set. Raises one of UNREACHABLE when Redis is."""
        ids = sorted(member.decode() for member in await self.client.smembers(self.keys.hosts))
        if not ids:
            return []
        raws = await self.client.mget([self.keys.host(host) for host in ids])
        records = []
        for host, raw in zip(ids, raws, strict=True):
            if raw is None:
                await self._forget(keys=[self.keys.host(host), self.keys.hosts], args=[host])
                continue
            try:
                records.append(HostRecord.from_json(raw))
            except HostRecordError as exc:
                logger.warning("the record of host %s is skipped: %s", host, exc)
        return records

    async def leave(self) -> None:
        """A clean stop: this host leaves the list now, not when its record expires."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.host(self.me.id))
            pipe.srem(self.keys.hosts, self.me.id)
            await pipe.execute()


def record_document(record: HostRecord, now: float, iso: Callable[[float], str]) -> dict[str, Any]:
    """A host as the admin API shows it."""
    return {
        "id": record.id,
        "proxy": record.proxy,
        "admin": record.admin,
        "version": record.version,
        "started_at": iso(record.started_at),
        "last_seen": iso(record.last_seen),
        "last_seen_ago": round(max(0.0, now - record.last_seen), 3),
    }
