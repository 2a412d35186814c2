"""The production upstream client: HTTP/1.1 over a keep-alive pool per backend.

A reverse proxy needs a small part of an HTTP client: write one request, parse one
response, keep the connection for the next. General clients (aiohttp, httpx) spend most
of a proxied request's time on what a proxy does not want (URL objects, header
multidicts, cookie jars, redirects, decompression); ``bench/proxy_bench.py`` measures the
difference. Parsing stays with httptools (llhttp, the parser uvicorn serves with), so this
module only frames requests and manages connections.

What it does not do, by design: cookies, redirects, decompression, automatic request
headers, HTTP/2, proxies from the environment.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from cutover.config import TimeoutsConfig
from cutover.types import RawHeaders
from cutover.upstream.base import (
    RequestBody,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReset,
    UpstreamTimeout,
)
from cutover.upstream.tls import client_context

# The client's framing headers are replaced by the framing of what is actually sent.
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
# A request that failed on a reused connection before any answer is retried once on a new
# one, when repeating it is safe (RFC 9110 §9.2.2): the server may have closed the idle
# connection just as it was picked.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Response bytes buffered before the backend is asked to pause (flow control).
_HIGH_WATER = 256 * 1024
# Bodies up to this size are written together with the head, in one send.
_JOIN_BODY = 16 * 1024
# A response head larger than this is refused (llhttp itself sets no bound). Counted by the
# reads that end before the head does, so it is a bound on memory, not an exact size.
_MAX_HEAD = 1024 * 1024


def body_until_close(headers: RawHeaders) -> bool:
    """Whether the body ends only when the backend closes the connection (RFC 9112 §6.3):
    no Content-Length and no chunked transfer coding."""
    for name, value in headers:
        name = name.lower()
        if name == b"content-length":
            return False
        if name == b"transfer-encoding" and value.rstrip().lower().endswith(b"chunked"):
            return False
    return True


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection to a backend, carrying one exchange at a time."""

    def __init__(self, pool: ConnectionPool) -> None:
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
            if response.head_bytes > _MAX_HEAD:
                self.fail(UpstreamProtocolError(f"response head over {_MAX_HEAD} bytes"))
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
        if status not in (204, 304):
            response.until_eof = body_until_close(response.headers)
        response.wake()

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is None:
            raise UpstreamProtocolError("body bytes after the response ended")
        response.chunks.append(body)
        response.buffered += len(body)
        if response.buffered > _HIGH_WATER and not response.paused and self.transport is not None:
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
        if keep_alive and self.request_sent:
            self._pool.release(self)
        else:
            self.close()

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise UpstreamReset("the backend closed the connection")
        self.transport.write(data)

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

    def __init__(self, connection: Connection, head_only: bool, read_timeout: float) -> None:
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


class ConnectionPool:
    """Keep-alive connections to one backend, most recently used first."""

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, timeouts: TimeoutsConfig
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.connect_timeout = timeouts.connect
        self.idle_timeout = timeouts.pool_idle
        self.loop = asyncio.get_running_loop()
        self._idle: deque[Connection] = deque()
        self._open: set[Connection] = set()
        self._closed = False
        self._retired = False
        self._sweep: asyncio.TimerHandle | None = None

    async def acquire(self) -> Connection:
        idle = self._idle
        if idle:
            now = self.loop.time()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < self.idle_timeout:
                    connection.reused = True
                    return connection
                connection.close()
        return await self._connect()

    def release(self, connection: Connection) -> None:
        if self._closed or self._retired or connection.closed:
            connection.close()
            return
        connection.idle_since = self.loop.time()
        self._idle.append(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.idle_timeout, self._expire_idle)

    def _expire_idle(self) -> None:
        """Close the connections unused for ``pool_idle``; again later while any are left."""
        self._sweep = None
        cutoff = self.loop.time() - self.idle_timeout
        idle = self._idle
        while idle and idle[0].idle_since <= cutoff:
            idle.popleft().close()
        if idle:
            self._sweep = self.loop.call_later(idle[0].idle_since - cutoff, self._expire_idle)

    def drop_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def retire(self) -> None:
        """Keep no connection from now on: the idle ones close now, a busy one when its
        exchange is done (``release``); new ones may still be opened and are not kept."""
        self._retired = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self.drop_idle()

    def forget(self, connection: Connection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    async def _connect(self) -> Connection:
        where = f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await self.loop.create_connection(
                    lambda: Connection(self),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to {where} timed out") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS
            raise UpstreamConnectError(f"cannot connect to {where}: {exc}") from None
        if self._closed:
            connection.close()
            raise UpstreamConnectError("the upstream client is closed")
        self._open.add(connection)
        return connection

    def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        for connection in [*self._open, *self._idle]:
            connection.close()
        self._idle.clear()
        self._open.clear()


class Http1Upstream:
    """One backend: requests are written as HTTP/1.1 over the pool's connections."""

    def __init__(
        self, base_url: str, timeouts: TimeoutsConfig, *, ca_file: Path | None = None
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = parts.scheme == "https"
        netloc = parts.netloc.rpartition("@")[2]
        default_port = f":{80 if parts.scheme == 'http' else 443}"
        self._host_header = b"host: " + netloc.removesuffix(default_port).encode("idna") + b"\r\n"
        self._auth_header = b""
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(credentials.encode("utf-8"))
            self._auth_header = b"authorization: Basic " + token + b"\r\n"
        self._timeouts = timeouts
        self._ca_file = ca_file
        self._pool: ConnectionPool | None = None

    async def start(self) -> None:
        tls = None
        if self._tls:
            tls = client_context(self._ca_file)
        self._pool = ConnectionPool(self._host, self._port, tls, self._timeouts)

    def _head(
        self, method: str, url: str, headers: RawHeaders, body: RequestBody
    ) -> tuple[bytes, bool]:
        """The request head, and whether the body goes chunked."""
        if not url.startswith(self._origin):
            raise ValueError(f"{url!r} is not on {self._origin}")
        target = url[len(self._origin) :] or "/"
        lines = [method.encode("ascii"), b" ", target.encode("latin-1"), b" HTTP/1.1\r\n",
                 self._host_header, self._auth_header]  # fmt: skip
        length = None
        for name, value in headers:
            if name in _FRAMING:
                if name == b"content-length":
                    length = b"%d" % int(value)  # checked digits; without OWS or leading zeros
                continue
            lines += (name, b": ", value, b"\r\n")
        chunked = False
        if isinstance(body, bytes):
            lines += (b"content-length: ", str(len(body)).encode("ascii"), b"\r\n")
        elif body is not None:
            if length is None:
                chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                lines += (b"content-length: ", length, b"\r\n")
        elif length is not None:
            lines += (b"content-length: ", length, b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines), chunked

    async def send(
        self, method: str, url: str, headers: RawHeaders, body: RequestBody
    ) -> Http1Response:
        pool = self._pool
        assert pool is not None, "start() was not awaited"
        head, chunked = self._head(method, url, headers, body)
        replayable = body is None or isinstance(body, bytes)
        while True:
            connection = await pool.acquire()
            response = Http1Response(connection, method == "HEAD", self._timeouts.read)
            connection.begin(response)
            try:
                if body is None:
                    connection.write(head)
                elif isinstance(body, bytes):
                    if len(body) <= _JOIN_BODY:
                        connection.write(head + body)
                    else:
                        connection.write(head)
                        connection.write(body)
                else:
                    await self._stream(connection, response, head, body, chunked)
                    if response.status and not connection.request_sent:
                        # Answered before the whole body was sent: the answer is read to
                        # its end, then the connection closes (see Connection._complete).
                        return response
                connection.request_sent = True
                await response.wait_headers()
            except UpstreamReset:
                if response.status:
                    return response  # it answered, then stopped reading the upload
                connection.close()
                if connection.reused and replayable and method in _IDEMPOTENT:
                    # The backend closed its idle connections; the others are suspect too.
                    pool.drop_idle()
                    continue  # on a new connection, so at most once
                raise
            except BaseException:
                connection.close()
                raise
            return response

    async def _stream(
        self,
        connection: Connection,
        response: Http1Response,
        head: bytes,
        chunks: AsyncIterator[bytes],
        chunked: bool,
    ) -> None:
        # The head goes out with the first chunk: a body the server refuses before it
        # starts (a bad chunk size, say) leaves the backend having seen nothing.
        pending = head
        async for chunk in chunks:
            if response.status:
                return  # the backend answered before the whole body was sent
            framed = b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk
            connection.write(pending + framed if pending else framed)
            pending = b""
            await connection.drain()
        connection.write(pending + b"0\r\n\r\n" if chunked else pending)
        connection.request_sent = True

    def retire(self) -> None:
        if self._pool is not None:
            self._pool.retire()

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
