"""Scripted backends for the HTTP/1.1 client's tests: raw asyncio TCP servers on the test's
own loop that answer with exact bytes, so the client meets what real servers do (and what
they should not)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from cutover.config import TimeoutsConfig
from cutover.upstream.http1 import Http1Upstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()


@asynccontextmanager
async def client(url: str, **timeouts: float) -> AsyncIterator[Http1Upstream]:
    upstream = Http1Upstream(url, TimeoutsConfig(**({"read": 5.0} | timeouts)))
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.aclose()


async def body_of(response) -> bytes:
    parts, more = [], True
    while more:
        chunk, more = await response.read()
        parts.append(chunk)
    await response.aclose()
    return b"".join(parts)


def answering(*replies: bytes, heads: list[bytes] | None = None) -> Handler:
    """Answer each request on a connection with the next reply, keeping the connection;
    the request heads go to ``heads``."""

    async def handler(reader, writer, _n) -> None:
        for reply in replies:
            head = await reader.readuntil(b"\r\n\r\n")
            if heads is not None:
                heads.append(head)
            writer.write(reply)
            await writer.drain()
        await reader.read()  # until the client closes

    return handler


def answering_then_closing(*parts: bytes) -> Handler:
    """Answer one request with ``parts`` (written one by one), then close the connection."""

    async def handler(reader, writer, _n) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for part in parts:
            writer.write(part)
            await writer.drain()

    return handler
