"""Requests to a backend held for the rest of the event loop's turn, then written together.

Writing to a loopback or LAN socket wakes the backend's process, and waking a sleeping one
costs the writer several microseconds (in a virtual machine, an interprocessor interrupt).
Written one by one, spread out by the work on each request, nearly every write finds the
backend asleep again; written together once the loop has run the callbacks of every read
it polled, one wake serves the lot (bench/README.md, "requests to a backend written
together"). No request waits longer than that turn: one alone in it is written at its end."""

from __future__ import annotations

import asyncio


class WriteBatch:
    """One pool's held writes, flushed by one callback per turn of the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._held: list[tuple[asyncio.Transport, bytes]] = []

    def write(self, transport: asyncio.Transport, data: bytes) -> None:
        held = self._held
        held.append((transport, data))
        if len(held) == 1:
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        held, self._held = self._held, []
        for transport, data in held:
            # One closed meanwhile (an exchange given up, a backend gone): its request is
            # moot, and the exchange has heard why from the connection.
            if not transport.is_closing():
                transport.write(data)
