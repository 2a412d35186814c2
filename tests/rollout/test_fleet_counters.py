"""Every host's counters in a real ``redis-server``: published, read back by the leader,
gone when a host stops publishing, and an unreachable Redis reported as such."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from cutover.request.metrics import Metrics
from cutover.rollout.fleet_counters import (
    CountersUnavailable,
    FleetCounters,
    counters_boot,
    counters_host,
)
from cutover.rollout.fleet_source import FleetSource
from cutover.rollout.redis_keys import RedisKeys
from cutover.rollout.sources import Subject, read_counters
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

KEYS = RedisKeys("cutover:test")
ENGINE = Subject("trade-engine", source="legacy", target="new")
DEADLINE = 5.0


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(
        redis_server.url, socket_timeout=1.0, socket_connect_timeout=1.0
    )
    yield client
    await client.aclose()


def busy_metrics() -> Metrics:
    metrics = Metrics()
    for code, seconds in (("2xx", 0.01), ("5xx", 0.3), ("error", 2.0)):
        metrics.observe("trade-engine", "new", "default", code, seconds)
    metrics.observe("trade-engine", "legacy", "default", "2xx", 0.02)
    metrics.shadow_requests.labels("trade-engine", "default", "mismatch").inc()
    return metrics


async def test_every_hosts_counters_are_read_back(client: aioredis.Redis) -> None:
    a, b = busy_metrics(), Metrics()
    b.observe("strategies", "new", "default", "2xx", 0.05)
    await FleetCounters(client, KEYS, "host-a", ttl=30, boot="a-1").publish(read_counters(a))
    host_b = FleetCounters(client, KEYS, "host-b", ttl=30, boot="b-1")
    await host_b.publish(read_counters(b))
    # Another deployment's counters, under another prefix, are not this fleet's.
    other = FleetCounters(client, RedisKeys("cutover:other"), "host-c", ttl=30, boot="c")
    await other.publish(read_counters(a))
    found = await host_b.read_all()
    assert sorted(found) == ["host-a", "host-b"]
    expected = read_counters(a)
    assert found["host-a"].boot == "a-1"
    assert (found["host-a"].requests, found["host-a"].errors) == (
        expected.requests,
        expected.errors,
    )
    assert found["host-a"].buckets == expected.buckets
    assert found["host-a"].shadow == expected.shadow
    assert found["host-b"].requests == {("strategies", "new"): 1.0}
    # A newer publication replaces the host's previous one.
    b.observe("strategies", "new", "default", "2xx", 0.05)
    await host_b.publish(read_counters(b))
    assert (await host_b.read_all())["host-b"].requests == {("strategies", "new"): 2.0}


async def test_a_host_that_stops_publishing_drops_out(client: aioredis.Redis) -> None:
    leader = FleetCounters(client, KEYS, "leader", ttl=30, boot="l")
    await leader.publish(read_counters(Metrics()))
    await FleetCounters(client, KEYS, "dead", ttl=0.3, boot="d").publish(read_counters(Metrics()))
    assert sorted(await leader.read_all()) == ["dead", "leader"]
    deadline = time.monotonic() + DEADLINE
    while "dead" in await leader.read_all():
        assert time.monotonic() < deadline, "the dead host's counters never expired"
        await asyncio.sleep(0.05)
    assert await client.smembers(KEYS.counter_hosts) == {b"leader"}  # cleaned up


async def test_unreadable_counters_are_left_out(client: aioredis.Redis, caplog) -> None:
    leader = FleetCounters(client, KEYS, "leader", ttl=30, boot="l")
    await leader.publish(read_counters(busy_metrics()))
    await client.set(KEYS.counters("stranger"), b'{"format": 99}')
    await client.sadd(KEYS.counter_hosts, "stranger")
    with caplog.at_level(logging.WARNING, "cutover.guard"):
        assert sorted(await leader.read_all()) == ["leader"]
        assert sorted(await leader.read_all()) == ["leader"]
    assert [r.getMessage() for r in caplog.records] == [
        "the counters of host stranger are left out: format 99, not 1"
    ]


async def test_an_unreachable_redis_is_reported_and_the_leader_counts_alone(
    client: aioredis.Redis, redis_server: RedisServer
) -> None:
    leader_metrics, other_metrics = Metrics(), Metrics()
    counters = FleetCounters(client, KEYS, "leader", ttl=30, boot="l")
    leader = FleetSource(leader_metrics, 60, counters)
    other = FleetSource(other_metrics, 60, FleetCounters(client, KEYS, "other", ttl=30, boot="o"))
    await other.share()
    await leader.share()
    await leader.observe(0, [ENGINE])
    redis_server.stop()
    with pytest.raises(CountersUnavailable):
        await counters.publish(read_counters(leader_metrics))
    with pytest.raises(CountersUnavailable):
        await counters.read_all()
    for _ in range(20):
        other_metrics.observe("trade-engine", "new", "default", "5xx", 0.01)
    leader_metrics.observe("trade-engine", "new", "default", "2xx", 0.01)
    await other.share()
    await leader.share()
    seen = (await leader.observe(5, [ENGINE]))["trade-engine"]
    assert (seen.new_requests, seen.new_errors) == (1, 0)  # its own traffic only
    redis_server.start()
    await other.share()
    seen = (await leader.observe(10, [ENGINE]))["trade-engine"]
    assert (seen.new_requests, seen.new_errors) == (21, 20)  # the fleet's again


def test_the_workers_of_one_run_publish_as_one_host() -> None:
    assert counters_host("edge-1", "edge-1", "/tmp/metrics") == "edge-1"
    assert counters_host(None, "box-41", None) == "box-41"
    workers = counters_host(None, "box-41", "/tmp/cutover-metrics-x")
    assert workers != "box-41" and workers == counters_host(None, "box-42", "/tmp/m")
    assert counters_boot("/tmp/cutover-metrics-x") == "/tmp/cutover-metrics-x"
    assert counters_boot(None) == counters_boot(None)  # one per process
