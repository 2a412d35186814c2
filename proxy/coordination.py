"""Several worker processes, one rollout: a short lock around every read-modify-write of
the state file, and one leader at a time running the guard's transitions.

Both are ``flock`` locks on files beside the state file, so they work across processes on
one machine and are released by the kernel when a process dies (even by ``kill -9``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class Coordination:
    def __init__(self, state_path: Path) -> None:
        directory = state_path.parent
        self._lock_path = directory / f".{state_path.name}.lock"
        self._leader_path = directory / f".{state_path.name}.leader"
        self._leader_fd: int | None = None

    @contextlib.contextmanager
    def state_lock(self) -> Iterator[None]:
        """Held only for the moment of reading and writing the state file."""
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

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

    def resign(self) -> None:
        if self._leader_fd is not None:
            os.close(self._leader_fd)
            self._leader_fd = None
