"""The keep-alive pool of one backend: connections opened on demand, handed out most
recently used first, closed when idle too long, none kept once retired."""

from __future__ import annotations

import asyncio

import pytest

from cutover.config import TimeoutsConfig
from cutover.upstream.base import UpstreamConnectError
from cutover.upstream.pool import ConnectionPool
from tests.upstream.scripted import OK, answering, body_of, client, scripted

pytestmark = pytest.mark.anyio


class Kept:
    """A connection as the pool sees it: never opened, so the pool never connects."""

    def __init__(self) -> None:
        self.closed = False
        self.reused = False
        self.idle_since = 0.0

    def close(self) -> None:
        self.closed = True


def new_pool(**timeouts: float) -> ConnectionPool:
    return ConnectionPool("127.0.0.1", 9, None, TimeoutsConfig(**timeouts))


async def test_the_most_recently_released_connection_is_handed_out_first() -> None:
    pool = new_pool()
    older, newer = Kept(), Kept()
    pool.release(older)
    pool.release(newer)
    assert await pool.acquire() is newer
    assert await pool.acquire() is older
    assert newer.reused and older.reused
    pool.close()


async def test_a_connection_idle_too_long_or_closed_is_not_handed_out() -> None:
    pool = new_pool(pool_idle=30.0)
    fresh, stale, gone = Kept(), Kept(), Kept()
    for connection in (fresh, stale, gone):
        pool.release(connection)
    stale.idle_since -= 30.0
    gone.closed = True  # the backend closed it; connection_lost has not run yet
    assert await pool.acquire() is fresh
    assert stale.closed and not fresh.closed
    pool.close()


async def test_a_retired_pool_closes_its_idle_connections_and_keeps_none_after() -> None:
    pool = new_pool()
    idle, busy = Kept(), Kept()
    pool.release(idle)
    pool.retire()
    assert idle.closed
    pool.release(busy)  # its exchange ended after the retirement
    assert busy.closed
    pool.close()


async def test_closing_the_pool_closes_every_connection() -> None:
    pool = new_pool()
    idle = Kept()
    pool.release(idle)
    pool.close()
    assert idle.closed
    late = Kept()
    pool.release(late)
    assert late.closed


async def test_a_retired_client_finishes_its_exchange_then_drops_the_connection() -> None:
    go_on = asyncio.Event()

    async def handler(reader, writer, _n) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        await go_on.wait()
        writer.write(b"ok")
        await reader.read()  # until the client closes

    async with scripted(handler) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        upstream.retire()
        go_on.set()
        assert await body_of(response) == b"ok"  # served to its end
        await body_of(await upstream.send("GET", server.url + "/", [], None))
    assert server.connections == 2  # the first was not kept for the second


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with scripted(answering()) as server:
        url = server.url
    async with client(url) as upstream:
        with pytest.raises(UpstreamConnectError):
            await upstream.send("GET", url + "/", [], None)


async def test_unused_connections_are_closed_after_pool_idle() -> None:
    closed = asyncio.Event()

    async def handler(reader, writer, _n) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await reader.read()  # until the client closes its side
        closed.set()

    async with scripted(handler) as server, client(server.url, pool_idle=0.2) as upstream:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await body_of(await upstream.send("GET", server.url + "/", [], None))
        await asyncio.wait_for(closed.wait(), timeout=5)
        assert loop.time() - sent >= 0.19  # not before pool_idle (less the clock's resolution)
        # The next request simply opens a new connection.
        await body_of(await upstream.send("GET", server.url + "/", [], None))
    assert server.connections == 2
