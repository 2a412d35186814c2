"""Opening this host's part in the fleet: its record (id, the proxy's and the admin API's
addresses, the version, when it started), what ``GET /fleet`` shows, and with the redis
backend the heartbeat that keeps the record in Redis."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from cutover.config import Settings
from cutover.ops.state_backend import StateBackendParts
from cutover.rollout.fleet import FileFleet, Fleet, RedisFleet
from cutover.rollout.hosts import HostRecord, HostRegistry, address, cutover_version
from cutover.rollout.redis_documents import UNREACHABLE
from cutover.rollout.redis_keys import RedisKeys


@dataclass
class FleetParts:
    view: Fleet
    registry: HostRegistry | None = None  # with Redis: the heartbeat to run

    async def leave(self) -> None:
        """A clean stop leaves the fleet's list at once (when Redis answers)."""
        if self.registry is not None:
            with contextlib.suppress(*UNREACHABLE):
                await self.registry.leave()


def open_fleet(settings: Settings, state: StateBackendParts) -> FleetParts:
    now = time.time()
    me = HostRecord(
        id=state.host,
        proxy=address(settings.listen.host, settings.listen.port),
        admin=address(settings.admin.host, settings.admin.port),
        version=cutover_version(),
        started_at=now,
        last_seen=now,
    )
    config = settings.state
    if state.redis is None:
        return FleetParts(FileFleet(me, state.coordination, config.path))
    assert config.url is not None  # StateConfig checks it
    registry = HostRegistry(RedisKeys(config.key_prefix), state.redis, me, poll=config.poll)
    view = RedisFleet(registry, state.coordination, config.url)  # type: ignore[arg-type]
    return FleetParts(view, registry)
