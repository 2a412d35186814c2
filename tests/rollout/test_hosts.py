"""The host registry (cutover.rollout.hosts) on a real redis-server: what a host's beat
writes, who is listed (the expired dropped), a clean stop leaving at once, and an outage
logged once and outlived."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis.asyncio as aioredis

from cutover.rollout.hosts import (
    HOST_TTL_POLLS,
    HostRecord,
    HostRegistry,
    address,
    cutover_version,
)
from cutover.rollout.redis_keys import RedisKeys
from tests.redis_server import RedisServer

T = TypeVar("T")
KEYS = RedisKeys("cutover:test")
DEADLINE = 10.0


def record(host: str, started_at: float = 1000.0) -> HostRecord:
    return HostRecord(
        id=host, proxy=f"{host}.lan:8080", admin=f"{host}.lan:9180", version="1.2.3",
        started_at=started_at, last_seen=started_at,
    )  # fmt: skip


def registry(
    url: str, host: str, *, poll: float = 1.0, keys: RedisKeys = KEYS
) -> tuple[HostRegistry, aioredis.Redis]:
    client = aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    return HostRegistry(keys, client, record(host), poll=poll), client


async def eventually(check: Callable[[], Awaitable[T]], what: str) -> T:
    end = time.monotonic() + DEADLINE
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.05)


def test_a_beat_writes_the_record_with_a_ttl_of_a_few_polls(redis_server: RedisServer) -> None:
    async def main() -> None:
        hosts, client = registry(redis_server.url, "host-a", poll=2.0)
        hosts.clock = lambda: 1234.5
        await hosts.beat()
        stored = HostRecord.from_json(await client.get(KEYS.host("host-a")))
        assert stored == HostRecord(
            id="host-a", proxy="host-a.lan:8080", admin="host-a.lan:9180", version="1.2.3",
            started_at=1000.0, last_seen=1234.5,
        )  # fmt: skip
        ttl = await client.pttl(KEYS.host("host-a"))
        assert 2000 * HOST_TTL_POLLS - 1000 < ttl <= 2000 * HOST_TTL_POLLS
        assert await client.smembers(KEYS.hosts) == {b"host-a"}
        await client.aclose()

    asyncio.run(main())


def test_the_live_hosts_are_listed_by_id(redis_server: RedisServer) -> None:
    async def main() -> None:
        b, client_b = registry(redis_server.url, "host-b")
        a, client_a = registry(redis_server.url, "host-a")
        other, client_other = registry(redis_server.url, "elsewhere", keys=RedisKeys("other"))
        for host in (b, a, other):
            await host.beat()
        assert [h.id for h in await b.live()] == ["host-a", "host-b"]
        assert [h.admin for h in await a.live()] == ["host-a.lan:9180", "host-b.lan:9180"]
        assert [h.id for h in await other.live()] == ["elsewhere"]  # another deployment's
        for client in (client_a, client_b, client_other):
            await client.aclose()

    asyncio.run(main())


def test_a_host_that_stops_beating_expires_and_leaves_the_set(redis_server: RedisServer) -> None:
    async def main() -> None:
        alive, client = registry(redis_server.url, "alive", poll=0.1)
        dead, dead_client = registry(redis_server.url, "dead", poll=0.1)
        await dead.beat()  # once: then it is "killed"
        beating = asyncio.create_task(alive.run())

        async def only_alive() -> bool:
            return [h.id for h in await alive.live()] == ["alive"]

        await eventually(only_alive, "the dead host to expire")
        assert await client.smembers(KEYS.hosts) == {b"alive"}
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
        for each in (client, dead_client):
            await each.aclose()

    asyncio.run(main())


def test_a_clean_stop_leaves_the_list_at_once(redis_server: RedisServer) -> None:
    async def main() -> None:
        a, client_a = registry(redis_server.url, "host-a", poll=60.0)
        b, client_b = registry(redis_server.url, "host-b", poll=60.0)
        await a.beat()
        await b.beat()
        await b.leave()
        assert [h.id for h in await a.live()] == ["host-a"]
        assert await client_a.smembers(KEYS.hosts) == {b"host-a"}
        for client in (client_a, client_b):
            await client.aclose()

    asyncio.run(main())


def test_a_record_that_is_not_one_is_skipped(redis_server: RedisServer) -> None:
    async def main() -> None:
        a, client = registry(redis_server.url, "host-a")
        await a.beat()
        await client.set(KEYS.host("junk"), b"{not json")
        await client.sadd(KEYS.hosts, "junk")
        assert [h.id for h in await a.live()] == ["host-a"]
        await client.aclose()

    asyncio.run(main())


def test_an_outage_is_logged_once_and_the_beat_comes_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cutover.state")

    async def main() -> None:
        a, client = registry(redis_server.url, "host-a", poll=0.05)
        failed = 0
        beat = a.beat

        async def counted_beat() -> None:
            nonlocal failed
            try:
                await beat()
            except Exception:
                failed += 1
                raise

        a.beat = counted_beat  # type: ignore[method-assign]
        beating = asyncio.create_task(a.run())

        async def listed() -> bool:
            return [h.id for h in await a.live()] == ["host-a"]

        await eventually(listed, "the first beat")
        redis_server.stop()

        def failures() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "is not written" in r.getMessage()]

        async def failed_three_times() -> bool:
            return failed >= 3

        await eventually(failed_three_times, "three failed beats")
        redis_server.start()
        await client.flushall()  # back without its data: the beat writes it again
        await eventually(listed, "the beat after the outage")
        assert len(failures()) == 1
        assert any("is written again" in r.getMessage() for r in caplog.records)
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
        await client.aclose()

    asyncio.run(main())


def test_the_version_is_the_installed_distributions() -> None:
    assert cutover_version() == importlib.metadata.version("cutover")


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [("10.0.0.7", 8080, "10.0.0.7:8080"), ("::1", 9180, "[::1]:9180")],
)
def test_an_address_is_host_and_port(host: str, port: int, expected: str) -> None:
    assert address(host, port) == expected


def test_a_wildcard_address_names_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "proxy-3")
    assert address("0.0.0.0", 8080) == "proxy-3:8080"
    assert address("::", 8080) == "proxy-3:8080"
