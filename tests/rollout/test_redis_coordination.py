"""The guard's lease in a real ``redis-server``: one leader for the fleet, kept by renewing,
taken over by another host when it lapses, with an epoch (the fencing token) that never
goes back; a host that cannot reach Redis judges alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis

from cutover.ops.state_backend import open_state
from cutover.request.metrics import Metrics
from cutover.rollout.redis_coordination import RedisCoordination
from cutover.rollout.redis_keys import RedisKeys
from tests.redis_server import RedisServer
from tests.rollout.test_redis_book import PREFIX, settings_for

pytestmark = pytest.mark.anyio

LEASE = 0.4  # seconds


@pytest.fixture
async def host(
    redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[Callable[[str], RedisCoordination]]:
    """``host("a")``: host a's coordination, as the gateway opens it."""
    opened = []

    def open_one(name: str) -> RedisCoordination:
        settings = settings_for(redis_server, tmp_path, name, lease=LEASE)
        parts = open_state(settings, Metrics())
        opened.append(parts)
        assert isinstance(parts.coordination, RedisCoordination)
        return parts.coordination

    yield open_one
    for parts in opened:
        await parts.aclose()


async def eventually(seconds: float, attempt: Callable[[], object]) -> float:
    """Call ``attempt()`` (a coroutine function) until it is truthy; how long that took."""
    start = time.monotonic()
    while not await attempt():  # type: ignore[misc]
        assert time.monotonic() - start < seconds, f"not within {seconds}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_one_of_two_hosts_leads(host: Callable[[str], RedisCoordination]) -> None:
    a, b = host("a"), host("b")
    assert await a.try_lead()
    assert not await b.try_lead()
    assert (a.leading, b.leading) == (True, False)
    assert await b.leader() == ("a", a.epoch)
    assert not a.alone and not b.alone


async def test_renewing_keeps_the_lease(host: Callable[[str], RedisCoordination]) -> None:
    a, b = host("a"), host("b")
    assert await a.try_lead()
    epoch = a.epoch
    end = time.monotonic() + 3 * LEASE
    while time.monotonic() < end:
        await asyncio.sleep(LEASE / 3)
        assert await a.try_lead()
        assert not await b.try_lead()
    assert a.epoch == epoch


async def test_renew_forever_keeps_the_lease_between_evaluations(
    host: Callable[[str], RedisCoordination],
) -> None:
    a, b = host("a"), host("b")
    assert await a.try_lead()
    renewing = asyncio.create_task(a.renew_forever(LEASE / 3))
    try:
        await asyncio.sleep(3 * LEASE)
        assert not await b.try_lead()
        assert a.leading
    finally:
        renewing.cancel()


async def test_a_lease_not_renewed_expires_and_another_host_leads_with_a_higher_epoch(
    host: Callable[[str], RedisCoordination],
) -> None:
    changes: list[bool] = []
    a, b = host("a"), host("b")
    a.on_change = changes.append
    assert await a.try_lead()
    old = a.epoch
    assert old is not None
    took = await eventually(5 * LEASE, b.try_lead)
    assert took >= LEASE * 0.8  # not before the lease lapsed
    assert b.epoch is not None and b.epoch > old
    # The old leader finds out at its next try, and does not take the lead back.
    assert not await a.try_lead()
    assert not a.leading
    assert changes == [True, False]


async def test_epochs_never_go_back_even_after_redis_lost_its_data(
    host: Callable[[str], RedisCoordination], redis_server: RedisServer
) -> None:
    a, b = host("a"), host("b")
    assert await a.try_lead()
    first = a.epoch
    assert first is not None
    redis.Redis.from_url(redis_server.url).flushall()  # leader and epoch gone
    assert await b.try_lead()
    assert b.epoch is not None and b.epoch > first
    # The old leader's renewal fails: its lease is not its own any more.
    assert not await a.try_lead()


async def test_release_lets_the_other_host_lead_at_its_next_try(
    host: Callable[[str], RedisCoordination],
) -> None:
    a, b = host("a"), host("b")
    assert await a.try_lead()
    assert not await b.try_lead()
    await a.release()
    assert not a.leading
    assert await b.try_lead()
    assert await b.leader() == ("b", b.epoch)


async def test_a_host_that_cannot_reach_redis_judges_alone(
    host: Callable[[str], RedisCoordination], redis_server: RedisServer
) -> None:
    a = host("a")
    assert await a.try_lead()
    redis_server.stop()
    assert not await a.try_lead()
    assert a.alone and not a.leading
    redis_server.start()
    # The lease is still in Redis (its data kept); once it lapses, a leads again.
    await eventually(5 * LEASE, a.try_lead)
    assert not a.alone


async def test_leases_of_two_deployments_are_apart(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        prod = RedisCoordination(RedisKeys("cutover:prod"), client, host="a", lease=LEASE)
        staging = RedisCoordination(RedisKeys("cutover:staging"), client, host="b", lease=LEASE)
        assert await prod.try_lead()
        assert await staging.try_lead()
        assert await RedisCoordination(RedisKeys(PREFIX), client, host="c", lease=LEASE).try_lead()
    finally:
        await client.aclose()
