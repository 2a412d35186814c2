"""A response as the forwarder reads it: the read timeout, a reset mid-body, flow control,
and closing it before its end."""

from __future__ import annotations

import asyncio

import pytest

from cutover.upstream.base import UpstreamReset, UpstreamTimeout
from cutover.upstream.connection import HIGH_WATER
from tests.upstream.scripted import (
    OK,
    answering,
    answering_then_closing,
    body_of,
    client,
    scripted,
)

pytestmark = pytest.mark.anyio


async def test_a_silent_backend_times_out() -> None:
    async def handler(reader, writer, _n) -> None:
        await reader.read()

    async with scripted(handler) as server, client(server.url, read=0.2) as upstream:
        with pytest.raises(UpstreamTimeout):
            await upstream.send("GET", server.url + "/", [], None)


async def test_a_reset_mid_body_is_an_error_not_a_short_body() -> None:
    handler = answering_then_closing(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
    async with scripted(handler) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        with pytest.raises(UpstreamReset):
            await body_of(response)


async def test_a_body_not_read_pauses_the_backend_and_reading_resumes_it() -> None:
    size = 4 * HIGH_WATER
    body = bytes(range(256)) * (size // 256)
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (size, body)
    async with scripted(answering(reply, OK)) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        for _ in range(200):
            if response.paused:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # time enough to buffer the rest, were reading not paused
        assert response.paused
        assert response.buffered < size
        assert await body_of(response) == body
        # Resumed and done with: the connection carries the next request.
        assert await body_of(await upstream.send("GET", server.url + "/", [], None)) == b"ok"
    assert server.connections == 1


@pytest.mark.parametrize("how", ["aclose", "abort"])
async def test_a_response_left_before_its_end_drops_the_connection(how: str) -> None:
    async def handler(reader, writer, n) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart" if n == 1 else OK)
        await reader.read()  # until the client closes

    async with scripted(handler) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        if how == "aclose":
            await response.aclose()
        else:
            response.abort()
            with pytest.raises(UpstreamReset, match="went away"):
                await body_of(response)
        assert await body_of(await upstream.send("GET", server.url + "/", [], None)) == b"ok"
    assert server.connections == 2
