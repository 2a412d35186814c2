"""Every host's counters in Redis, for a guard leader that judges the whole fleet with the
embedded source: each host publishes its cumulative per-migration counters and latency
buckets (one JSON string per host, expiring after a few guard intervals, so a host that
died drops out), and the leader reads every live host's.

    counters:<host>   the host's ``CounterSnapshot`` as JSON, PX ttl
    counter-hosts     a set of the hosts that published (members whose string expired are
                      removed by the next reader)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import redis
import redis.asyncio as aioredis

from cutover.rollout.redis_keys import RedisKeys
from cutover.rollout.sources import BOUNDS, CounterSnapshot, Key

logger = logging.getLogger("cutover.guard")

FORMAT = 1
# One run of this process: a host publishing under the same name after a restart has new
# counters, counted again from zero (``FleetTotal``).
PROCESS_BOOT = uuid.uuid4().hex


class CountersUnavailable(Exception):
    """Redis could not be reached (or refused) to publish or read the fleet's counters."""


class CountersFormatError(ValueError):
    """A host's published counters could not be read (another version, or not ours)."""


def counters_host(host_id: str | None, host: str, multiprocess_dir: str | None) -> str:
    """The name this host's counters are published under. The workers of one ``cutover
    run`` count together (their metrics are one set of files, read whole by each), so they
    publish under one name: the configured ``host_id``, else the supervisor's process."""
    if host_id is not None:
        return host_id
    if multiprocess_dir is not None:
        return f"{socket.gethostname()}-{os.getppid()}"
    return host


def counters_boot(multiprocess_dir: str | None) -> str:
    """Which run counted: the workers of one ``cutover run`` share their metric files."""
    return multiprocess_dir if multiprocess_dir is not None else PROCESS_BOOT


def encode(snapshot: CounterSnapshot, boot: str) -> str:
    def rows(values: Mapping[Key, Any]) -> list[list[Any]]:
        return [[first, second, value] for (first, second), value in values.items()]

    return json.dumps({
        "format": FORMAT, "boot": boot,
        "requests": rows(snapshot.requests), "errors": rows(snapshot.errors),
        "buckets": rows(snapshot.buckets), "shadow": rows(snapshot.shadow),
    }, separators=(",", ":"))  # fmt: skip


def decode(raw: bytes | str) -> CounterSnapshot:
    """A published snapshot; CountersFormatError when it is not one this version reads."""
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise CountersFormatError(f"format {data.get('format')!r}, not {FORMAT}")

        def counts(name: str) -> dict[Key, float]:
            return {(str(a), str(b)): float(value) for a, b, value in data[name]}

        buckets: dict[Key, list[float]] = {}
        for a, b, values in data["buckets"]:
            if len(values) != len(BOUNDS):  # other latency buckets: not comparable
                raise CountersFormatError(f"{len(values)} latency buckets, not {len(BOUNDS)}")
            buckets[(str(a), str(b))] = [float(value) for value in values]
        return CounterSnapshot(
            counts("requests"), counts("errors"), buckets, counts("shadow"), boot=str(data["boot"])
        )
    except CountersFormatError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CountersFormatError(f"not a counters document ({exc!r})") from None


class FleetCounters:
    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, host: str, *, ttl: float, boot: str
    ) -> None:
        """``host``: the name this host publishes under; ``ttl``: seconds its counters stay
        without a new publication (a few guard intervals); ``boot``: this run's mark."""
        self.client = client
        self.keys = keys
        self.host = host
        self.ttl_ms = max(1, round(ttl * 1000))
        self.boot = boot
        self._unreadable: set[str] = set()  # hosts already warned about

    async def publish(self, snapshot: CounterSnapshot) -> None:
        """This host's counters, replacing its previous ones; CountersUnavailable."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.counters(self.host), encode(snapshot, self.boot), px=self.ttl_ms)
        pipe.sadd(self.keys.counter_hosts, self.host)
        try:
            await pipe.execute()
        except redis.RedisError as exc:
            raise CountersUnavailable(str(exc) or type(exc).__name__) from exc

    async def read_all(self) -> dict[str, CounterSnapshot]:
        """Every live host's latest counters, by host (this one's too, once published);
        CountersUnavailable. A host whose counters cannot be read is left out (warned once)."""
        hosts = self.keys.counter_hosts
        try:
            members = sorted(member.decode() for member in await self.client.smembers(hosts))
            names = [self.keys.counters(member) for member in members]
            values = await self.client.mget(names) if names else []
            gone = [m for m, value in zip(members, values, strict=True) if value is None]
            # Expired: a host that stopped publishing. One that publishes again in between
            # is added back by its next publication (the leader remembers its counts).
            if gone:
                await self.client.srem(hosts, *gone)
        except redis.RedisError as exc:
            raise CountersUnavailable(str(exc) or type(exc).__name__) from exc
        found: dict[str, CounterSnapshot] = {}
        for member, value in zip(members, values, strict=True):
            if value is None:
                continue
            try:
                found[member] = decode(value)
            except CountersFormatError as exc:
                if member not in self._unreadable:
                    logger.warning("the counters of host %s are left out: %s", member, exc)
                    self._unreadable.add(member)
            else:
                self._unreadable.discard(member)
        return found
