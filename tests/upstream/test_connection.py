"""One HTTP/1.1 connection parsing what scripted servers answer: headers as sent, the ways a
body ends, interim responses, trailers, and the malformed or hostile answers refused."""

from __future__ import annotations

import pytest

from cutover.upstream.base import UpstreamProtocolError
from tests.upstream.scripted import OK, answering, answering_then_closing, body_of, client, scripted

pytestmark = pytest.mark.anyio


async def test_response_headers_keep_their_case_order_and_repeats() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 3\r\n\r\n\x1f\x8b\x08"
    )
    async with scripted(answering(reply)) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        assert response.headers == [
            (b"Set-Cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"Content-Encoding", b"gzip"),
            (b"Content-Length", b"3"),
        ]
        assert await body_of(response) == b"\x1f\x8b\x08"  # never decompressed


async def test_an_answer_to_head_has_no_body_and_the_connection_is_reused() -> None:
    head_reply = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"
    async with scripted(answering(head_reply, OK)) as server, client(server.url) as upstream:
        response = await upstream.send("HEAD", server.url + "/", [], None)
        assert response.status == 200
        assert await body_of(response) == b""
        response = await upstream.send("GET", server.url + "/", [], None)
        assert await body_of(response) == b"ok"
    assert server.connections == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_bodiless_statuses_end_at_the_head(status: int) -> None:
    reply = b"HTTP/1.1 %d X\r\ncontent-length: 5\r\n\r\n" % status
    async with scripted(answering(reply, OK)) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        assert (response.status, await body_of(response)) == (status, b"")
        response = await upstream.send("GET", server.url + "/", [], None)
        assert await body_of(response) == b"ok"


async def test_interim_responses_are_not_passed_on() -> None:
    reply = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n" + OK
    )
    async with scripted(answering(reply)) as server, client(server.url) as upstream:
        response = await upstream.send("POST", server.url + "/", [], b"x")
        assert response.status == 200
        assert response.headers == [(b"content-length", b"2")]


async def test_a_chunked_response_arrives_as_its_content() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    )
    async with scripted(answering(reply, OK)) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        assert await body_of(response) == b"hello world"
        response = await upstream.send("GET", server.url + "/", [], None)
        assert await body_of(response) == b"ok"
    assert server.connections == 1


async def test_a_body_without_length_ends_when_the_backend_closes() -> None:
    handler = answering_then_closing(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ", b"close"
    )
    async with scripted(handler) as server, client(server.url) as upstream:
        for _ in range(2):
            response = await upstream.send("GET", server.url + "/", [], None)
            assert await body_of(response) == b"until close"
    assert server.connections == 2


async def test_a_body_in_a_transfer_coding_other_than_chunked_ends_at_close() -> None:
    handler = answering_then_closing(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n\x1f\x8bdata"
    )
    async with scripted(handler) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        assert await body_of(response) == b"\x1f\x8bdata"


async def test_connection_close_is_honoured() -> None:
    reply = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"

    async def handler(reader, writer, _n) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await reader.read()

    async with scripted(handler) as server, client(server.url) as upstream:
        for _ in range(2):
            response = await upstream.send("GET", server.url + "/", [], None)
            assert await body_of(response) == b"ok"
    assert server.connections == 2


async def test_trailer_fields_are_not_taken_for_headers() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n"
        b"2\r\nok\r\n0\r\nx-sum: 42\r\n\r\n"
    )
    async with scripted(answering(reply)) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        assert await body_of(response) == b"ok"
        assert [name for name, _ in response.headers] == [b"transfer-encoding", b"trailer"]


async def test_bytes_beyond_the_response_retire_the_connection() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nx-smuggled: 1\r\n\r\n"
    )
    async with scripted(answering(reply, reply)) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        assert await body_of(response) == b"ok"
        response = await upstream.send("GET", server.url + "/", [], None)
        assert response.headers == [(b"content-length", b"2")]
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    ],
    ids=["bad-status", "two-lengths", "not-http", "unasked-upgrade"],
)
async def test_a_malformed_response_is_a_protocol_error(reply: bytes) -> None:
    async with scripted(answering(reply)) as server, client(server.url) as upstream:
        with pytest.raises(UpstreamProtocolError):
            await upstream.send("GET", server.url + "/", [], None)


async def test_an_endless_response_head_is_refused() -> None:
    async def handler(reader, writer, _n) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        while not writer.is_closing():
            writer.write(b"x-filler: " + b"f" * 1000 + b"\r\n")
            await writer.drain()

    async with scripted(handler) as server, client(server.url) as upstream:
        with pytest.raises(UpstreamProtocolError, match="head over"):
            await upstream.send("GET", server.url + "/", [], None)
