"""Opening the state backend the settings name: the file (one host's workers, an flock) or
Redis (a fleet of hosts: versioned documents, a guard lease), as the book the migrations
save through, the coordination the guard and the operator take turns by, and where the
guard's latest evaluations are shared."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from cutover.config import Settings, StateBackend
from cutover.request.metrics import Metrics
from cutover.rollout.book import Book, StateBook
from cutover.rollout.coordination import Coordination, Coordinator
from cutover.rollout.guard_status import EvaluationFile
from cutover.rollout.state import StateStore

REDIS_TIMEOUT = 1.0  # seconds: an unreachable store is found out quickly, and served around
RESULTS = ("ok", "conflict", "fenced", "error")


def host_id(settings: Settings) -> str:
    """How this process names itself to the fleet."""
    return settings.state.host_id or f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class StateBackendParts:
    book: Book
    coordination: Coordinator
    evaluations: EvaluationFile | Any  # or RedisEvaluations: the same interface
    host: str
    clients: list[Any] = field(default_factory=list)  # to close at shutdown
    redis: Any = None  # the async client, with the redis backend

    @property
    def fleet_host(self) -> str | None:
        """The host stamped on transitions: with Redis, where several hosts write."""
        return None if self.redis is None else self.host

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def open_state(settings: Settings, metrics: Metrics) -> StateBackendParts:
    """The parts for ``settings.state``; nothing is read yet (``Migrations.restore`` loads)."""
    config = settings.state
    host = host_id(settings)
    if config.backend == StateBackend.FILE:
        return StateBackendParts(
            StateBook(StateStore(config.path)),
            Coordination(config.path),
            EvaluationFile(config.path),
            host,
        )
    import redis
    import redis.asyncio as aioredis

    from cutover.rollout.redis_book import RedisBook
    from cutover.rollout.redis_coordination import RedisCoordination
    from cutover.rollout.redis_keys import RedisKeys

    assert config.url is not None  # StateConfig checks it
    password = None if config.password is None else config.password.get_secret_value()
    options = {
        "password": password,
        "socket_timeout": REDIS_TIMEOUT,
        "socket_connect_timeout": REDIS_TIMEOUT,
    }
    client = aioredis.Redis.from_url(config.url, **options)
    sync_client = redis.Redis.from_url(config.url, **options)
    keys = RedisKeys(config.key_prefix)
    for result in RESULTS:
        metrics.state_writes.labels(result)
    book = RedisBook(
        keys, client, sync_client, StateStore(config.cache_path),
        where=_where(config.url), on_write=lambda result: metrics.state_writes.labels(result).inc(),
    )  # fmt: skip
    coordination = RedisCoordination(
        keys, client, host=host, lease=config.lease, on_change=metrics.guard_leader.set
    )
    from cutover.rollout.redis_evaluations import RedisEvaluations

    # Kept 10 guard intervals without a newer one: past that, the leader is long gone.
    evaluations = RedisEvaluations(sync_client, keys.evaluations, ttl=10 * settings.guard.interval)
    return StateBackendParts(book, coordination, evaluations, host, [client], client)


def _where(url: str) -> str:
    """The store's URL as named in errors (it never carries a password: StateConfig)."""
    return url
