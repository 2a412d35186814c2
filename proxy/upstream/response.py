"""One HTTP/1.1 response as it arrives: its connection fills it in (status, headers, body
chunks), the forwarder reads it with the read timeout, and reading what was buffered lets a
paused connection read again."""

from __future__ import annotations

import asyncio
from typing import Protocol

from cutover.types import RawHeaders
from cutover.upstream.base import UpstreamError, UpstreamReset, UpstreamTimeout


class ResponseSource(Protocol):
    """What a response needs of the connection it arrives on."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport | None
    closed: bool

    def fail(self, error: UpstreamError) -> None: ...

    def close(self) -> None: ...


class Http1Response:
    """One response as it arrives: the status and headers, then the body in chunks."""

    __slots__ = (
        "_connection",
        "_error",
        "_loop",
        "_read_timeout",
        "_waiter",
        "buffered",
        "chunks",
        "done",
        "head_bytes",
        "head_only",
        "headers",
        "paused",
        "status",
        "until_eof",
    )

    def __init__(self, connection: ResponseSource, head_only: bool, read_timeout: float) -> None:
        self._connection = connection
        self._loop = connection.loop
        self._read_timeout = read_timeout
        self._waiter: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        self.status = 0
        self.headers: RawHeaders = []
        self.head_bytes = 0
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.done = False
        self.head_only = head_only
        self.until_eof = False
        self.paused = False

    # -- the connection's side ----------------------------------------------------

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def finish(self) -> None:
        self.done = True
        self.wake()

    def fed(self) -> None:
        """A read ended with the body unfinished: the reader wakes on the chunks already."""

    def fail(self, error: UpstreamError) -> None:
        if not self.done:
            self._error = error
            self.wake()

    # -- the reader's side --------------------------------------------------------

    async def _wait(self) -> None:
        """Until the connection has news, at most ``timeouts.read`` seconds."""
        self._waiter = waiter = self._loop.create_future()
        timer = self._loop.call_later(self._read_timeout, self._expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            seconds = f"{self._read_timeout:g}"
            self._connection.fail(UpstreamTimeout(f"no answer from the backend in {seconds} s"))

    async def wait_headers(self) -> None:
        try:
            while not self.status:
                if self._error is not None:
                    raise self._error
                await self._wait()
        except BaseException:
            if not self.status:
                self._connection.close()
            raise

    async def read(self) -> tuple[bytes, bool]:
        while not self.chunks:
            if self._error is not None:
                raise self._error
            if self.done:
                return b"", False
            await self._wait()
        chunks = self.chunks
        chunk = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.paused:
            self._resume()
        return chunk, not self.done

    def _resume(self) -> None:
        self.paused = False
        connection = self._connection
        if connection.transport is not None and not connection.closed:
            connection.transport.resume_reading()

    def abort(self) -> None:
        if not self.done:
            self._connection.fail(UpstreamReset("the client went away"))

    async def aclose(self) -> None:
        if not self.done:
            self._connection.close()  # the rest of the body is not wanted
