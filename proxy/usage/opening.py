"""The usage store the settings name: SQLite at ``usage.path``, or with ``state.backend:
redis`` the fleet's Redis (its own synchronous client: the store is used from threads)."""

from __future__ import annotations

import time
from collections.abc import Callable

from cutover.config import Settings, StateBackend
from cutover.usage.sqlite_store import SqliteUsageStore
from cutover.usage.store import UsageStore

REDIS_TIMEOUT = 1.0  # seconds, as the state backend's


def open_usage_store(settings: Settings, *, clock: Callable[[], float] = time.time) -> UsageStore:
    """Blocking (it may create the database file): call it in a thread. UsageStoreError if
    the SQLite database cannot be opened."""
    state = settings.state
    if state.backend != StateBackend.REDIS:
        return SqliteUsageStore(settings.usage.path, clock=clock)
    import redis

    from cutover.usage.redis_store import RedisUsageStore

    assert state.url is not None  # StateConfig checks it
    password = None if state.password is None else state.password.get_secret_value()
    client = redis.Redis.from_url(
        state.url, password=password, socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
    )  # fmt: skip
    return RedisUsageStore(
        client, state.key_prefix, retention_days=settings.usage.retention_days, clock=clock
    )
