"""Every migration's state as this process last read or wrote it, over the one state file.

Each migration's rollout saves through the book: the file is rewritten with that
migration's new state and every other migration's current one (including those no longer
configured, whose history stays), and only once the write succeeded does the book hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Protocol

from cutover.rollout.state import RolloutState, Stamp, StateStore


class Book(Protocol):
    """What the migrations need of their store: the file's ``StateBook`` or Redis's."""

    states: dict[str, RolloutState]
    available: bool

    def load(self) -> None: ...

    def save_blocking(self, changes: dict[str, RolloutState]) -> None: ...

    async def save(self, name: str, state: RolloutState) -> None: ...

    async def save_many(self, changes: dict[str, RolloutState]) -> None: ...

    async def refresh(self) -> bool: ...

    def fenced(self, epoch: int | None) -> contextlib.AbstractContextManager[None]: ...


class StateBook:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.states: dict[str, RolloutState] = {}
        self.stamp: Stamp | None = None
        # One save at a time, even one whose caller was cancelled and left the state lock.
        self._saving = asyncio.Lock()
        self.available = True  # a local file: always

    @contextlib.contextmanager
    def fenced(self, epoch: int | None) -> Iterator[None]:
        """The file needs no fencing token: the flock keeps one leader per host."""
        yield

    def load(self) -> None:
        """Read the file (blocking: for start-up); StateError when it is unusable."""
        self.stamp = self.store.stamp()
        self.states = self.store.load() or {}

    def save_blocking(self, changes: dict[str, RolloutState]) -> None:
        """Save ``changes`` with every other state (blocking: for start-up); SaveError."""
        states = {**self.states, **changes}
        self.stamp = self.store.save(states)
        self.states = states

    async def save(self, name: str, state: RolloutState) -> None:
        """Save ``name``'s new state off the event loop; SaveError (nothing changed, here or
        on disk) when it cannot be written."""
        await self.save_many({name: state})

    async def save_many(self, changes: dict[str, RolloutState]) -> None:
        async with self._saving:
            states = {**self.states, **changes}
            stamp = await asyncio.to_thread(self.store.save, states)
            self.states, self.stamp = states, stamp

    async def refresh(self) -> bool:
        """Re-read the file if another process saved it since; True if it did."""
        stamp, states = await asyncio.to_thread(self._read_if_changed)
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        if states is not None:
            self.states = states
        return True

    def _read_if_changed(self) -> tuple[Stamp | None, dict[str, RolloutState] | None]:
        stamp = self.store.stamp()
        return stamp, (None if stamp == self.stamp else self.store.load())
