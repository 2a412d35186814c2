"""The Python ceiling: the least a Python proxy can do per request, as a yardstick.

asyncio protocols on uvloop, httptools parsing both ways, a keep-alive pool of upstream
connections; one coroutine-free callback chain per request. It picks one of two upstreams at
random (50/50), forwards the method, target and headers (hop-by-hop ones dropped, a body by
Content-Length), and returns the status, headers and whole body. No features, no streaming,
no timeouts, no error pages beyond a bare 502: what Cutover adds is measured against this.

    CEILING_UPSTREAMS=http://127.0.0.1:8001,http://127.0.0.1:8002 \\
        python bench/ceiling_proxy.py --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
from collections import deque
from urllib.parse import urlsplit

import httptools

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
     b"transfer-encoding", b"upgrade", b"content-length"}
)  # fmt: skip
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n"


class Upstream(asyncio.Protocol):
    """One keep-alive connection to a backend: one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.client: Downstream | None = None
        self.headers: list[bytes] = []
        self.body: list[bytes] = []
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, client: Downstream, head: bytes, body: bytes) -> None:
        self.client, self.headers, self.body = client, [], []
        assert self.transport is not None
        self.transport.write(head + body if body else head)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.fail()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in HOP_BY_HOP:
            self.headers += (name, b": ", value, b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        keep = self.parser.should_keep_alive()
        body = b"".join(self.body)
        status = self.parser.get_status_code()
        head = b"".join((b"HTTP/1.1 %d \r\n" % status, *self.headers,
                         b"content-length: %d\r\n\r\n" % len(body)))  # fmt: skip
        if keep:
            self.pool.release(self)
        elif self.transport is not None:
            self.transport.close()
        if client is not None:
            client.answer(head + body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.discard(self)
        self.fail()

    def fail(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.answer(BAD_GATEWAY)
        if self.transport is not None:
            self.transport.close()


class Pool:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.host_header = parts.netloc.encode("ascii")
        self.idle: deque[Upstream] = deque()

    def release(self, conn: Upstream) -> None:
        self.idle.append(conn)

    def discard(self, conn: Upstream) -> None:
        with contextlib.suppress(ValueError):  # not idle: it was lent out
            self.idle.remove(conn)

    def send(self, client: Downstream, head: bytes, body: bytes) -> None:
        if self.idle:
            self.idle.pop().send(client, head, body)
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.create_connection(lambda: Upstream(self), self.host,
                                                       self.port))  # fmt: skip

        def connected(done: asyncio.Task) -> None:
            if done.exception() is not None:
                client.answer(BAD_GATEWAY)
                return
            _, conn = done.result()
            conn.send(client, head, body)

        task.add_done_callback(connected)


class Downstream(asyncio.Protocol):
    """One client connection: requests answered in order (no pipelining beyond one)."""

    def __init__(self, pools: list[Pool]) -> None:
        self.pools = pools
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[bytes] = []
        self.body: list[bytes] = []
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower != b"host" and lower not in HOP_BY_HOP:
            self.headers += (name, b": ", value, b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        pool = random.choice(self.pools)
        body = b"".join(self.body)
        method = self.parser.get_method()
        length = b"content-length: %d\r\n" % len(body) if body else b""
        head = b"".join((method, b" ", self.url, b" HTTP/1.1\r\nhost: ", pool.host_header,
                         b"\r\n", *self.headers, length, b"\r\n"))  # fmt: skip
        pool.send(self, head, body)

    def answer(self, response: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(response)
        if not self.keep_alive:
            transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    upstreams = os.environ["CEILING_UPSTREAMS"].split(",")
    try:
        import uvloop
    except ImportError:  # the ceiling is uvloop's; asyncio's own loop is slower
        uvloop = None

    async def serve() -> None:
        pools = [Pool(url) for url in upstreams]
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Downstream(pools), args.host, args.port,
                                          backlog=1024)  # fmt: skip
        async with server:
            await server.serve_forever()

    if uvloop is not None:
        uvloop.run(serve())
    else:
        asyncio.run(serve())


if __name__ == "__main__":
    main()
