"""One HTTP/1.1 connection to a backend: the asyncio protocol that writes a request, parses
its response with httptools (llhttp, the parser uvicorn serves with) and applies flow
control both ways. It carries one exchange at a time and hands itself back to its pool
when the exchange leaves it reusable."""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from cutover.upstream.base import UpstreamError, UpstreamProtocolError, UpstreamReset
from cutover.upstream.framing import close_delimited, may_reuse
from cutover.upstream.response import Http1Response
from cutover.upstream.write_batch import WriteBatch

# Response bytes buffered before the backend is asked to pause (flow control).
HIGH_WATER = 256 * 1024
# A response head larger than this is refused (llhttp itself sets no bound). Counted by the
# reads that end before the head does, so it is a bound on memory, not an exact size.
MAX_HEAD = 1024 * 1024


class ConnectionOwner(Protocol):
    """What a connection needs of the pool it belongs to."""

    loop: asyncio.AbstractEventLoop
    batch: WriteBatch

    def release(self, connection: Connection) -> None: ...

    def forget(self, connection: Connection) -> None: ...


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection to a backend, carrying one exchange at a time."""

    def __init__(self, pool: ConnectionOwner) -> None:
        self._pool = pool
        self.loop = pool.loop
        self._parser = HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: Http1Response | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.request_sent = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._fresh_parser = False

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            self.close()  # nothing was asked: a backend talking out of turn
            return
        if not response.status:
            response.head_bytes += len(data)
            if response.head_bytes > MAX_HEAD:
                self.fail(UpstreamProtocolError(f"response head over {MAX_HEAD} bytes"))
                return
        try:
            self._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            cause = exc.__context__
            if not isinstance(cause, UpstreamError):
                cause = UpstreamProtocolError(f"malformed response from the backend: {exc!r}")
            self.fail(cause)
            return
        if self._fresh_parser:
            self._parser = HttpResponseParser(self)
            self._fresh_parser = False
        response = self.response
        if response is not None and response.status:
            response.fed()  # this read ended inside the answer's body: more is to come

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        response = self.response
        if response is not None:
            self.response = None
            if response.until_eof and response.status:
                response.finish()  # a body delimited by the connection closing
            else:
                reason = str(exc) if exc else "the backend closed the connection"
                response.fail(UpstreamReset(reason))
        self._wake_writer()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    # -- httptools callbacks ------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        if response is None:
            raise UpstreamProtocolError("bytes after the response ended")
        if not response.status:  # after the head, these are trailer fields: dropped
            response.headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            raise UpstreamProtocolError("bytes after the response ended")
        status = self._parser.get_status_code()
        if status < 200:
            if status == 101:
                raise UpstreamProtocolError("the backend switched protocols unasked")
            response.headers = []  # an interim response (100, 103): not forwarded
            return
        response.status = status
        if response.head_only:
            # No body follows an answer to HEAD, whatever its headers say; llhttp cannot
            # be told, so this exchange ends here and the next one gets a fresh parser.
            self._fresh_parser = True
            self._complete(self._parser.should_keep_alive())
            return
        response.until_eof = close_delimited(status, response.headers)
        response.wake()

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is None:
            raise UpstreamProtocolError("body bytes after the response ended")
        response.chunks.append(body)
        response.buffered += len(body)
        if response.buffered > HIGH_WATER and not response.paused and self.transport is not None:
            response.paused = True
            self.transport.pause_reading()
        response.wake()

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None and response.status and not self._fresh_parser:
            self._complete(self._parser.should_keep_alive())

    # -- exchanges ----------------------------------------------------------------

    def begin(self, response: Http1Response) -> None:
        self.response = response
        self.request_sent = False

    def _complete(self, keep_alive: bool) -> None:
        response = self.response
        assert response is not None
        self.response = None
        response.finish()
        if response.paused and self.transport is not None:
            # What is buffered stays with the response; the connection can read again.
            response.paused = False
            self.transport.resume_reading()
        if may_reuse(keep_alive, self.request_sent):
            self._pool.release(self)
        else:
            self.close()

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise UpstreamReset("the backend closed the connection")
        self.transport.write(data)

    def write_soon(self, data: bytes) -> None:
        """``write``, with the other requests of this turn of the loop (``WriteBatch``)."""
        if self.closed or self.transport is None:
            raise UpstreamReset("the backend closed the connection")
        self._pool.batch.write(self.transport, data)

    async def drain(self) -> None:
        if not self._write_paused or self.closed:
            return
        self._drained = asyncio.get_running_loop().create_future()
        await self._drained

    def _wake_writer(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    def fail(self, error: UpstreamError) -> None:
        response = self.response
        if response is not None:
            response.fail(error)
        self.close()  # with the exchange unfinished: aborted
        self.response = None

    def abandon(self) -> None:
        """Drop the exchange without a word to it (it has moved on: a replay, a client that
        left): the connection is aborted, whatever of the answer is still coming."""
        self.response = None
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    def close(self) -> None:
        """With an exchange unfinished, at once (its pending writes dropped: nothing of it
        may linger); an idle or finished connection after its pending writes."""
        if self.transport is not None and not self.closed:
            self.closed = True
            if self.response is None:
                self.transport.close()
            else:
                self.transport.abort()
            # connection_lost follows and takes it out of the pool; until then `closed`
            # keeps acquire() from handing it out.
        self.closed = True
