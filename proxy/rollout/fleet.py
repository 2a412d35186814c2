"""What ``GET /fleet`` shows: the hosts sharing the state, the guard leader and its lease
epoch, and whether the state store answers. With the file backend the fleet is this host;
with Redis it is every host whose record has not expired (``hosts.HostRegistry``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from cutover.rollout.control import iso
from cutover.rollout.coordination import Coordinator
from cutover.rollout.hosts import HostRecord, HostRegistry, record_document
from cutover.rollout.redis_documents import UNREACHABLE

if TYPE_CHECKING:
    from cutover.rollout.redis_coordination import RedisCoordination

FleetDocument = dict[str, Any]


class FleetUnavailable(Exception):
    """The state store did not answer; ``document`` is what this host knows by itself."""

    def __init__(self, message: str, document: FleetDocument) -> None:
        super().__init__(message)
        self.document = document


class Fleet(Protocol):
    async def status(self) -> FleetDocument: ...


def public_url(url: str) -> str:
    """The store's URL without any user or password."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class FileFleet:
    """The file backend: one host (its worker processes share the file)."""

    def __init__(
        self,
        me: HostRecord,
        coordination: Coordinator,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.me = me
        self.coordination = coordination
        self.path = path
        self.clock = clock

    async def status(self) -> FleetDocument:
        now = self.clock()
        record = dataclasses.replace(self.me, last_seen=now)
        # Only this process can say it leads: another worker's flock is not visible here.
        leader = {"host": record.id, "epoch": None} if self.coordination.leading else None
        return {
            "backend": "file",
            "hosts": [{**record_document(record, now, iso), "local": True}],
            "leader": leader,
            "store": {"up": True, "url": None, "path": str(self.path.resolve())},
        }


class RedisFleet:
    """The redis backend: every live host's record, and the lease's holder."""

    def __init__(
        self,
        registry: HostRegistry,
        coordination: RedisCoordination,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.coordination = coordination
        self.url = public_url(url)
        self.clock = clock

    async def status(self) -> FleetDocument:
        try:
            records = await self.registry.live()
            held = await self.coordination.leader()
        except UNREACHABLE as exc:
            raise FleetUnavailable(
                f"the state store {self.url} is unreachable: {exc}", self._alone()
            ) from exc
        now = self.clock()
        me = self.registry.me.id
        return {
            "backend": "redis",
            "hosts": [
                {**record_document(record, now, iso), "local": record.id == me}
                for record in records
            ],
            "leader": None if held is None else {"host": held[0], "epoch": held[1]},
            "store": {"up": True, "url": self.url},
        }

    def _alone(self) -> FleetDocument:
        """Without Redis: this host, and no leader known (none can write while it is down)."""
        now = self.clock()
        record = self.registry.now()
        return {
            "backend": "redis",
            "hosts": [{**record_document(record, now, iso), "local": True}],
            "leader": None,
            "store": {"up": False, "url": self.url},
        }
