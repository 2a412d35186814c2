"""The ``cutover demo`` driver's stop signals: Ctrl-C, SIGTERM and SIGHUP stop the demo
cleanly, whatever it is doing when they arrive."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any


class DemoStopped(Exception):
    """A stop signal arrived while the demo was starting; the argument is its name."""


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP ask the demo to stop. The handler only records the first
    one and wakes the traffic loop, so a signal never interrupts starting or stopping a
    child; any later signal is ignored, so the cleanup always finishes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: str | None = None
        self._wake: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            return
        self.received = signal.Signals(signum).name
        if self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._wake()

    def check(self) -> None:
        if self.received is not None:
            raise DemoStopped(self.received)

    @contextlib.contextmanager
    def waking(self) -> Iterator[asyncio.Event]:
        """An event of the running loop that a stop signal sets (as asyncio.Runner wakes
        its loop on SIGINT: call_soon_threadsafe from the handler)."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self._wake = lambda: loop.call_soon_threadsafe(event.set)
        if self.received is not None:
            event.set()
        try:
            yield event
        finally:
            self._wake = None
