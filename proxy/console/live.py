"""The console's live updates. While a page is open, the ``Watcher`` reads the migration
documents every ``poll`` seconds (0.25), after taking up what another worker or host saved,
and counts a new version whenever what the console shows changed (a transition, a verdict,
a breaker, a new sample); each open event stream waits for the next version and sends its
page's fragments again. Nobody watching, nothing is polled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from cutover.rollout.control import Control
from cutover.rollout.state import StateError

POLL = 0.25
logger = logging.getLogger("cutover.console")


def fingerprint(documents: list[dict[str, Any]]) -> str:
    """What the pages show of the documents, without what moves on its own (the time
    healthy, the countdown to the next promotion)."""
    shown = [
        {k: v for k, v in document.items() if k not in ("healthy_for", "next_promotion_in")}
        for document in documents
    ]
    return json.dumps(shown, sort_keys=True, default=str)


class Watcher:
    def __init__(
        self, control: Control, *, poll: float = POLL, tick: Callable[[], object] = lambda: None
    ) -> None:
        """``tick``: something else the pages show that changes on its own (the samples)."""
        self.control = control
        self.poll = poll
        self.tick = tick
        self.version = 0
        self.documents: list[dict[str, Any]] = []
        self.closed = False
        self._seen = ""
        self._changed = asyncio.Condition()
        self._watchers = 0
        self._someone = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._problem: str | None = None

    async def bump(self) -> None:
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def read(self) -> list[dict[str, Any]]:
        """The documents as saved now (another worker's or host's transitions included)."""
        control = self.control
        async with control.coordination.locked():
            await control.migrations.sync()
        return await control.current_statuses()

    async def run(self) -> None:
        while not self.closed:
            if self._watchers == 0:
                self._someone.clear()
                await self._someone.wait()
            try:
                documents = await self.read()
                self._problem = None
            except (OSError, StateError) as exc:
                if str(exc) != self._problem:
                    logger.warning("console: the documents were not read: %s", exc)
                    self._problem = str(exc)
            else:
                self.documents = documents
                seen = fingerprint(documents) + repr(self.tick())
                if seen != self._seen:
                    self._seen = seen
                    await self.bump()
            await asyncio.sleep(self.poll)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        self._watchers += 1
        self._someone.set()
        try:
            yield
        finally:
            self._watchers -= 1

    async def next_version(self, seen: int, timeout: float) -> int:
        """The version after ``seen`` (``seen`` itself after ``timeout`` seconds or once
        closed)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version != seen or self.closed), timeout
                )
            return self.version

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run())

    async def close(self) -> None:
        """Every open stream ends (the admin listener stops with no request left)."""
        self.closed = True
        self._someone.set()
        async with self._changed:
            self._changed.notify_all()

    async def stop(self) -> None:
        await self.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
