"""Failed sign-ins, slowed down: after a client's n-th failure its next attempt waits
``base * 2**(n-1)`` seconds (up to ``cap``), and one client's attempts are taken one at a
time, so guesses sent in parallel queue behind each other's waits. The wait is an asyncio
sleep: the loop serves everybody else meanwhile. A success forgets the client's failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

BASE_DELAY = 0.5
MAX_DELAY = 8.0
MAX_CLIENTS = 10_000  # failures remembered; the oldest are forgotten first


@dataclass
class Attempt:
    failed: bool = False

    def fail(self) -> None:
        self.failed = True


class SignInThrottle:
    def __init__(
        self,
        *,
        base: float = BASE_DELAY,
        cap: float = MAX_DELAY,
        clients: int = MAX_CLIENTS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base = base
        self.cap = cap
        self.clients = clients
        self.sleep = sleep
        self.failures: OrderedDict[str, int] = OrderedDict()
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # the lock, its users

    def delay(self, client: str) -> float:
        """What the client's next attempt waits, in seconds."""
        failures = self.failures.get(client, 0)
        return 0.0 if failures == 0 else min(self.cap, self.base * 2 ** (failures - 1))

    @contextlib.asynccontextmanager
    async def attempt(self, client: str) -> AsyncIterator[Attempt]:
        """``async with throttle.attempt(ip) as attempt:`` check the token, ``attempt.fail()``
        if it is wrong."""
        lock, users = self._turns.get(client, (asyncio.Lock(), 0))
        self._turns[client] = (lock, users + 1)
        try:
            async with lock:
                delay = self.delay(client)
                if delay:
                    await self.sleep(delay)
                attempt = Attempt()
                yield attempt
                self._count(client, attempt.failed)
        finally:
            lock, users = self._turns[client]
            if users == 1:
                del self._turns[client]
            else:
                self._turns[client] = (lock, users - 1)

    def _count(self, client: str, failed: bool) -> None:
        if not failed:
            self.failures.pop(client, None)
            return
        self.failures[client] = self.failures.get(client, 0) + 1
        self.failures.move_to_end(client)
        while len(self.failures) > self.clients:
            self.failures.popitem(last=False)
