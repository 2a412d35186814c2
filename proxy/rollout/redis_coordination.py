"""A fleet of hosts, one guard leader: a lease in Redis (``SET NX PX``, renewed every third
of it) that carries an epoch, incremented by each new leader. The epoch is the fencing
token of the leader's writes (``RedisBook.fenced``): a leader that was paused past its
lease and wakes up finds a newer epoch in Redis and cannot write.

Within one process, operator actions and the guard's evaluations still take turns (an
asyncio lock); across processes and hosts the documents' revisions keep writes apart, so
there is no lock in Redis to wait for."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

import redis.asyncio as aioredis

from cutover.rollout.redis_documents import UNREACHABLE
from cutover.rollout.redis_keys import RedisKeys

logger = logging.getLogger("cutover.guard")

# KEYS: leader, epoch. ARGV: host, lease in ms, the wall clock in ms. The new epoch, or 0
# if another leads. The epoch never goes back, even after Redis lost its data: it is at
# least the time of acquisition (hosts' clocks agree far better than a lease is long).
ACQUIRE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local epoch = redis.call('INCR', KEYS[2])
if epoch < tonumber(ARGV[3]) then
  epoch = tonumber(ARGV[3])
  redis.call('SET', KEYS[2], epoch)
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. epoch, 'PX', ARGV[2])
return epoch
"""
# KEYS: leader. ARGV: "<host> <epoch>", lease in ms. 1 if still ours (renewed), else 0.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCoordination:
    def __init__(
        self,
        keys: RedisKeys,
        client: aioredis.Redis,
        *,
        host: str,
        lease: float,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        """``on_change(leading)``: told when this host becomes or stops being the leader."""
        self.keys = keys
        self.client = client
        self.host = host
        self.lease_ms = max(1, round(lease * 1000))
        self.on_change = on_change
        self.epoch: int | None = None  # ours while we lead
        self.alone = False  # Redis unreachable: this host judges its own traffic, alone
        self._local: asyncio.Lock | None = None
        self._trying: asyncio.Lock | None = None
        self._acquire = client.register_script(ACQUIRE_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)

    @contextlib.contextmanager
    def state_lock(self) -> Iterator[None]:
        """Start-up's: nothing to hold (the documents' revisions keep hosts apart)."""
        yield

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        if self._local is None:
            self._local = asyncio.Lock()
        async with self._local:
            yield

    @property
    def leading(self) -> bool:
        return self.epoch is not None

    async def try_lead(self) -> bool:
        """Renew our lease, or take it if nobody holds it; whether we lead now. One at a
        time (the renewal task and the guard's tick both ask)."""
        if self._trying is None:
            self._trying = asyncio.Lock()
        async with self._trying:
            return await self._try_lead()

    async def _try_lead(self) -> bool:
        try:
            if self.epoch is not None:
                held = await self._renew(
                    keys=[self.keys.leader], args=[self._token(), self.lease_ms]
                )
                if not held:
                    logger.warning("the guard's lease (epoch %s) was lost", self.epoch)
                    self._set(None)
            if self.epoch is None:
                now_ms = round(time.time() * 1000)
                epoch = int(await self._acquire(
                    keys=[self.keys.leader, self.keys.epoch],
                    args=[self.host, self.lease_ms, now_ms],
                ))  # fmt: skip
                if epoch:
                    logger.info("%s leads the guard (epoch %d)", self.host, epoch)
                    self._set(epoch)
        except UNREACHABLE as exc:
            if not self.alone:
                logger.warning("the state store is unreachable (%s): judging alone", exc)
            self.alone = True
            self._set(None)
            return False
        self.alone = False
        return self.epoch is not None

    async def leader(self) -> tuple[str, int] | None:
        """(host, epoch) of the fleet's guard leader, None when none holds the lease."""
        value = await self.client.get(self.keys.leader)
        if value is None:
            return None
        host, _, epoch = value.decode().rpartition(" ")
        return host, int(epoch)

    async def renew_forever(self, interval: float) -> None:
        """Keep the lease while we lead (the guard's own interval may be longer than a third
        of the lease)."""
        while True:
            await asyncio.sleep(interval)
            if self.epoch is not None:
                await self.try_lead()

    async def release(self) -> None:
        """Give the lease up (a clean stop): another host leads at its next evaluation."""
        if self.epoch is None:
            return
        with contextlib.suppress(*UNREACHABLE):
            await self._release(keys=[self.keys.leader], args=[self._token()])
        self._set(None)

    def resign(self) -> None:
        """For the file backend's interface: the lease is released by ``release``."""

    def _token(self) -> str:
        return f"{self.host} {self.epoch}"

    def _set(self, epoch: int | None) -> None:
        was = self.epoch is not None
        self.epoch = epoch
        if was != (epoch is not None):
            self.on_change(epoch is not None)
