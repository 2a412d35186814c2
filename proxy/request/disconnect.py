"""Noticing a client that leaves while the proxy waits on a backend, without paying for it
on every request."""

from __future__ import annotations

import asyncio
import time

from cutover.types import Receive
from cutover.upstream.base import UpstreamResponse

# A request still waiting for response headers after this long gets a watcher for the
# client leaving; quicker ones never pay for one.
WATCH_AFTER = 0.5


async def wait_for_disconnect(receive: Receive, response: UpstreamResponse) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    response.abort()


class ClientWatch:
    """Cancel the current task if the client disconnects while the backend is slow to
    answer. Registering is a dict insert; the watching task starts only for requests still
    without response headers after ``WATCH_AFTER`` seconds (see ``SlowAnswers``)."""

    def __init__(self, receive: Receive, slow: SlowAnswers) -> None:
        self._receive = receive
        self._task = asyncio.current_task()
        self._gone = False
        self._watcher: asyncio.Task[None] | None = None
        self._slow = slow
        slow.add(self)

    def start(self) -> None:
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._gone = True
        if self._task is not None:
            self._task.cancel()

    def client_gone(self) -> bool:
        if self._gone and self._task is not None:
            self._task.uncancel()
        return self._gone

    def stop(self) -> None:
        self._slow.discard(self)
        if self._watcher is not None:
            self._watcher.cancel()


class SlowAnswers:
    """One ticking task for every request waiting on its backend (cheaper than a timer per
    request); it ends by itself when nothing is waiting."""

    def __init__(self, after: float = WATCH_AFTER) -> None:
        self.after = after
        self._waiting: dict[ClientWatch, float] = {}
        self._ticker: asyncio.Task[None] | None = None

    def add(self, watch: ClientWatch) -> None:
        self._waiting[watch] = time.monotonic()
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())

    def discard(self, watch: ClientWatch) -> None:
        self._waiting.pop(watch, None)

    async def _tick(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(self.after / 2)
                cutoff = time.monotonic() - self.after
                for watch, since in list(self._waiting.items()):
                    if since <= cutoff:
                        del self._waiting[watch]
                        watch.start()
        finally:
            self._ticker = None
