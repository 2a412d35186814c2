"""Several worker processes, one rollout: a short lock around every read-modify-write of
the state file, and one leader at a time running the guard's transitions.

Both are ``flock`` locks on files beside the state file, so they work across processes on
one machine and are released by the kernel when a process dies (even by ``kill -9``).
Waiting for the state lock blocks, so a serving process takes it with ``locked()``: in a
thread, after an asyncio lock that keeps the process's own coroutines in line.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from pathlib import Path
from typing import Protocol


class Coordinator(Protocol):
    """What the guard, the operator's control and the gateway need of a coordination: the
    file's (``Coordination``: one host's workers) or Redis's (``RedisCoordination``)."""

    epoch: int | None  # the leader's fencing token (None: no fencing)
    alone: bool  # the shared store is unreachable: judge this host's traffic alone

    def state_lock(self) -> AbstractContextManager[None]: ...

    def locked(self) -> AbstractAsyncContextManager[None]: ...

    @property
    def leading(self) -> bool: ...

    async def try_lead(self) -> bool: ...

    async def release(self) -> None: ...


class Coordination:
    def __init__(self, state_path: Path) -> None:
        directory = state_path.parent
        self._lock_path = directory / f".{state_path.name}.lock"
        self._leader_path = directory / f".{state_path.name}.leader"
        self._leader_fd: int | None = None
        self._local = asyncio.Lock()  # bound to the event loop on first use
        self.epoch: int | None = None  # no fencing: the flock keeps one leader per host
        self.alone = False  # the file is always there: never judging alone

    @contextlib.contextmanager
    def state_lock(self) -> Iterator[None]:
        """Held only for the moment of reading and writing the state file. Blocking: for
        start-up; a serving process uses ``locked()``."""
        fd = self._acquire()
        try:
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """The state lock without blocking the event loop: one holder per process at a
        time (an asyncio lock), the flock itself taken in a thread."""
        async with self._local:
            handoff = _Handoff(self._acquire)
            try:
                fd = await asyncio.to_thread(handoff.acquire)
            except BaseException:
                handoff.abandon()  # the thread may still get the lock: it lets go then
                raise
            try:
                yield
            finally:
                os.close(fd)

    def _acquire(self) -> int:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def lead(self) -> bool:
        """Become (or stay) the leader if no other live process is; never blocks."""
        if self._leader_fd is not None:
            return True
        self._leader_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._leader_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._leader_fd = fd
        return True

    @property
    def leading(self) -> bool:
        return self._leader_fd is not None

    async def try_lead(self) -> bool:
        """``lead()`` off the event loop."""
        return await asyncio.to_thread(self.lead)

    async def release(self) -> None:
        self.resign()

    def resign(self) -> None:
        if self._leader_fd is not None:
            os.close(self._leader_fd)
            self._leader_fd = None


class _Handoff:
    """The flock a thread takes for a waiter that may give up first (cancelled, or its loop
    stopping): whichever of the two comes second closes the descriptor. A lock got for no
    one is let go by the thread itself, not by a callback on the event loop: a stopping
    loop cancels every task left and drops a thread's late result."""

    def __init__(self, acquire: Callable[[], int]) -> None:
        self._acquire = acquire
        self._guard = threading.Lock()  # held only to hand over: never while waiting
        self._fd: int | None = None
        self._abandoned = False

    def acquire(self) -> int:
        """In the thread: the descriptor, or OSError; closed at once if abandoned."""
        fd = self._acquire()
        with self._guard:
            if not self._abandoned:
                self._fd = fd
                return fd
        os.close(fd)
        raise OSError("the state lock was got for a waiter that gave up")

    def abandon(self) -> None:
        """On the loop: the waiter gives up; the lock is let go if already got."""
        with self._guard:
            self._abandoned = True
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
