"""Every host follows the fleet's state within a second: a change is announced on a pub/sub
channel (a hint, sooner than the next read), and every ``state.poll`` seconds the documents'
revisions are read anyway, because pub/sub loses what is sent while a subscriber is
disconnected. What changed is adopted by the migrations (the splitter's weights follow)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

from cutover.rollout.coordination import Coordinator
from cutover.rollout.redis_documents import UNREACHABLE
from cutover.rollout.redis_keys import RedisKeys
from cutover.rollout.registry import Migrations

logger = logging.getLogger("cutover.state")


class StateFollower:
    def __init__(
        self,
        migrations: Migrations,
        coordination: Coordinator,
        client: aioredis.Redis,
        keys: RedisKeys,
        *,
        poll: float,
        on_store: Callable[[bool], None] = lambda up: None,
    ) -> None:
        """``on_store(up)``: told after every read whether the store answered."""
        self.migrations = migrations
        self.coordination = coordination
        self.client = client
        self.keys = keys
        self.poll = poll
        self.on_store = on_store
        self._hint = asyncio.Event()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hint.wait(), self.poll)
                self._hint.clear()
                try:
                    async with self.coordination.locked():
                        await self.migrations.sync()
                except Exception:
                    logger.exception("following the fleet's state failed; trying again")
                self.on_store(self.migrations.book.available)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        """Set the hint on every announced change; subscribe again after a disconnection."""
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.keys.changes)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._hint.set()
            except UNREACHABLE:
                await asyncio.sleep(self.poll)
            finally:
                with contextlib.suppress(*UNREACHABLE):
                    await pubsub.aclose()
