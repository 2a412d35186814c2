"""A cap on requests in flight to each backend: ``limits.max_concurrent_per_backend`` slots
per backend; a request finding them all taken waits up to ``limits.queue_timeout``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from cutover.config import LimitsConfig


class Overloaded(Exception):
    """Too many requests in flight to a backend for longer than ``limits.queue_timeout``."""

    def __init__(self, backend: str) -> None:
        super().__init__(f"too many requests in flight to the {backend} backend")
        self.backend = backend


class Slot(asyncio.Semaphore):
    """One backend's places: a semaphore a callback can also take a place of."""

    def take(self) -> bool:
        """Take a free place without suspending; False when none is free (or requests are
        waiting for one: they come first). What ``acquire`` does when it need not wait."""
        if self._value <= 0 or self._waiters:  # locked(), without its generator
            return False
        self._value -= 1
        return True


def backend_slots(limits: LimitsConfig, backends: Iterable[str]) -> dict[str, Slot]:
    return {name: Slot(limits.max_concurrent_per_backend) for name in backends}


async def wait_for_slot(slot: asyncio.Semaphore, timeout: float) -> bool:
    """Take one of ``slot``'s places once one frees, waiting up to ``timeout`` seconds; False
    if none did. (A free slot is taken with ``await slot.acquire()``: it does not suspend.)"""
    try:
        async with asyncio.timeout(timeout):
            await slot.acquire()
    except TimeoutError:
        return False
    return True


def retry_after(limits: LimitsConfig) -> int:
    """Seconds an overloaded client is told to wait (``Retry-After``)."""
    return max(1, round(limits.queue_timeout))
