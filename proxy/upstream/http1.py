"""The production upstream client: HTTP/1.1 over a keep-alive pool per backend.

A reverse proxy needs a small part of an HTTP client: write one request, parse one
response, keep the connection for the next. General clients (aiohttp, httpx) spend most
of a proxied request's time on what a proxy does not want (URL objects, header
multidicts, cookie jars, redirects, decompression); ``bench/proxy_bench.py`` measures the
difference. This module ties the parts together: ``framing`` builds the request head,
``pool`` keeps the connections, ``connection`` writes and parses (with httptools, the
parser uvicorn serves with), ``response`` is what the forwarder reads.

What it does not do, by design: cookies, redirects, decompression, automatic request
headers, HTTP/2, proxies from the environment.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from cutover.config import TimeoutsConfig
from cutover.types import RawHeaders
from cutover.upstream.base import RequestBody, UpstreamReset
from cutover.upstream.connection import Connection
from cutover.upstream.framing import (
    FRAMING_HEADERS,
    LAST_CHUNK,
    encode_chunk,
    origin_fields,
    request_head,
)
from cutover.upstream.pool import ConnectionPool
from cutover.upstream.response import Http1Response
from cutover.upstream.tls import client_context

# A request that failed on a reused connection before any answer is retried once on a new
# one, when repeating it is safe (RFC 9110 §9.2.2): the server may have closed the idle
# connection just as it was picked.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Bodies up to this size are written together with the head, in one send.
_JOIN_BODY = 16 * 1024


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
        self._origin_fields = origin_fields(parts)
        # Without its host line: for a request that leads with the client's (preserve_host).
        self._other_host_fields = self._origin_fields.partition(b"\r\n")[2]
        self._timeouts = timeouts
        self._ca_file = ca_file
        self._pool: ConnectionPool | None = None
        # What a request target is appended to: the URL's own path (base_url + raw path).
        self._base_path = base_url[len(self._origin) :].encode("latin-1")
        self.read_timeout = timeouts.read

    @property
    def pool(self) -> ConnectionPool:
        """The keep-alive pool (the request path's fast exchanges take its connections)."""
        assert self._pool is not None, "start() was not awaited"
        return self._pool

    def whole_request(
        self, method: bytes, target: bytes, headers: RawHeaders, body: bytes | None
    ) -> bytes:
        """A request read whole, for ``target`` (the client's raw path and query): its head,
        with ``content-length`` when it had one (``body`` None: it had none), then ``body``.
        What ``request_head`` makes of a whole body, without the URL built and taken apart."""
        fields = self._origin_fields
        if headers and headers[0][0] == b"host":
            fields = self._other_host_fields
        lines = [method, b" ", self._base_path + target, b" HTTP/1.1\r\n", fields]
        for name, value in headers:
            if name not in FRAMING_HEADERS:
                lines += (name, b": ", value, b"\r\n")
        if body is None:
            lines.append(b"\r\n")
        else:
            lines += (b"content-length: %d\r\n\r\n" % len(body), body)
        return b"".join(lines)

    async def start(self) -> None:
        tls = None
        if self._tls:
            tls = await asyncio.to_thread(client_context, self._ca_file)  # loads a CA bundle
        self._pool = ConnectionPool(self._host, self._port, tls, self._timeouts)

    async def send(
        self, method: str, url: str, headers: RawHeaders, body: RequestBody
    ) -> Http1Response:
        pool = self._pool
        assert pool is not None, "start() was not awaited"
        fields = self._origin_fields
        if headers and headers[0][0] == b"host":
            fields = self._other_host_fields  # TLS (SNI, the certificate) keeps the URL's host
        head, chunked = request_head(method, url, self._origin, fields, headers, body)
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
                replayable = body is None or isinstance(body, bytes)
                if connection.reused and replayable and method in IDEMPOTENT:
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
            framed = encode_chunk(chunk) if chunked else chunk
            connection.write(pending + framed if pending else framed)
            pending = b""
            await connection.drain()
        connection.write(pending + LAST_CHUNK if chunked else pending)
        connection.request_sent = True

    def retire(self) -> None:
        if self._pool is not None:
            self._pool.retire()

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
