"""The fleet's usage store (cutover.usage.redis_store) against a real redis-server: the
same behaviour as SQLite's, shared by every host, expiring with retention."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from cutover.usage.redis_store import RedisUsageStore
from cutover.usage.store import UsageStoreError, day_of
from tests.redis_server import RedisServer
from tests.usage import stores
from tests.usage.rows import DAY1, row


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=1.0)
    yield client
    client.close()


@pytest.fixture
def store(client: redis.Redis) -> RedisUsageStore:
    return RedisUsageStore(client, "cutover:test", retention_days=90, clock=lambda: DAY1 + 86400)


@pytest.mark.parametrize(
    "behaviour",
    [stores.upserts_add_counts, stores.rows_since_filters, stores.counts_clients_since,
     stores.retention_drops_old_days],
)  # fmt: skip
def test_shared_behaviour(store: RedisUsageStore, behaviour) -> None:
    behaviour(store)


def test_two_hosts_add_to_one_report(client: redis.Redis, store: RedisUsageStore) -> None:
    other = RedisUsageStore(client, "cutover:test", retention_days=90)
    store.write([row("a", count=2, hint="0042")])
    other.write([row("a", count=3), row("b", method="POST", agent=None)])
    rows = {(r.client, r.method): r for r in store.rows_since(None, 0)}
    assert rows[("a", "GET")].count == 5
    assert rows[("a", "GET")].hint == "0042"
    assert rows[("b", "POST")].user_agent is None


def test_keys_are_under_the_prefix_and_expire(client: redis.Redis, store: RedisUsageStore) -> None:
    store.write([row()])
    keys = sorted(key.decode() for key in client.keys("*"))
    day = f"cutover:test:usage:trade-engine:{day_of(DAY1)}"
    assert keys == ["cutover:test:usage:days", day]
    expire_at = client.expiretime(day)
    assert expire_at == int(DAY1 + 86400 + 90 * 86400)


def test_an_unreachable_redis_is_a_store_error(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=0.5)
    store = RedisUsageStore(client, "cutover:test", retention_days=90)
    redis_server.stop()
    with pytest.raises(UsageStoreError):
        store.write([row()])
    with pytest.raises(UsageStoreError):
        store.rows_since(None, 0)
