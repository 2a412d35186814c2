"""The HTTP/1.1 client as a whole, against scripted servers: the request goes out as given
on one keep-alive connection, request bodies are framed, a request the backend dropped on a
reused connection is retried when that is safe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cutover.upstream.base import UpstreamReset
from tests.upstream.scripted import OK, Handler, answering, body_of, client, scripted

pytestmark = pytest.mark.anyio


async def test_requests_share_one_keep_alive_connection_and_go_out_as_given() -> None:
    heads: list[bytes] = []
    async with (
        scripted(answering(OK, OK, OK, heads=heads)) as server,
        client(server.url) as upstream,
    ):
        for _ in range(3):
            url = server.url + "/a/%2Fb?q=%20x&q=2"
            response = await upstream.send("GET", url, [(b"X-Case", b"Kept")], None)
            assert (response.status, await body_of(response)) == (200, b"ok")
    assert server.connections == 1
    host = server.url.removeprefix("http://").encode()
    assert heads[0] == (
        b"GET /a/%2Fb?q=%20x&q=2 HTTP/1.1\r\nhost: " + host + b"\r\nX-Case: Kept\r\n\r\n"
    )


def closing_second_request() -> Handler:
    """Answer one request, then take the next and close without answering: a backend
    whose idle timeout fired as the client reused the connection."""

    async def handler(reader, writer, n) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        if n == 1:
            await reader.readuntil(b"\r\n\r\n")
            return  # closes
        await reader.read()

    return handler


async def test_a_get_on_a_connection_the_backend_just_closed_is_retried_once() -> None:
    async with scripted(closing_second_request()) as server, client(server.url) as upstream:
        await body_of(await upstream.send("GET", server.url + "/", [], None))
        response = await upstream.send("GET", server.url + "/", [], None)
        assert await body_of(response) == b"ok"
    assert server.connections == 2


async def test_a_post_on_a_connection_the_backend_just_closed_is_not_repeated() -> None:
    async with scripted(closing_second_request()) as server, client(server.url) as upstream:
        await body_of(await upstream.send("GET", server.url + "/", [], None))
        with pytest.raises(UpstreamReset):
            await upstream.send("POST", server.url + "/", [], b"pay once")
    assert server.connections == 1


def reading_body(received: list[bytes], ending: bytes) -> Handler:
    async def handler(reader, writer, _n) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        received.append(head)
        received.append(await reader.readuntil(ending))
        writer.write(OK)
        await reader.read()

    return handler


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_body_of_unknown_length_goes_chunked() -> None:
    received: list[bytes] = []
    handler = reading_body(received, b"0\r\n\r\n")
    async with scripted(handler) as server, client(server.url) as upstream:
        headers = [(b"transfer-encoding", b"chunked")]
        response = await upstream.send("POST", server.url + "/", headers, chunks(b"hello", b" x"))
        assert response.status == 200
    assert b"transfer-encoding: chunked\r\n" in received[0]
    assert received[0].count(b"transfer-encoding") == 1
    assert received[1] == b"5\r\nhello\r\n2\r\n x\r\n0\r\n\r\n"


async def test_a_streamed_body_of_known_length_keeps_its_length() -> None:
    received: list[bytes] = []
    async with scripted(reading_body(received, b"x")) as server, client(server.url) as upstream:
        headers = [(b"content-length", b"7")]
        response = await upstream.send(
            "PUT", server.url + "/", headers, chunks(b"abc", b"def", b"x")
        )
        assert response.status == 200
    assert b"content-length: 7\r\n" in received[0]
    assert b"transfer-encoding" not in received[0]
    assert received[1] == b"abcdefx"


async def test_a_whole_body_replaces_the_clients_framing() -> None:
    received: list[bytes] = []
    async with scripted(reading_body(received, b"body")) as server, client(server.url) as upstream:
        headers = [(b"content-length", b"999"), (b"transfer-encoding", b"chunked")]
        await upstream.send("POST", server.url + "/", headers, b"body")
    assert b"content-length: 4\r\n" in received[0]
    assert b"999" not in received[0] and b"transfer-encoding" not in received[0]


async def test_an_answer_before_the_upload_ends_is_returned() -> None:
    answered = asyncio.Event()

    async def handler(reader, writer, _n) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Too Large\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbig")
        await writer.drain()
        answered.set()
        await reader.read()

    async def upload() -> AsyncIterator[bytes]:
        yield b"first"
        await answered.wait()
        await asyncio.sleep(0)  # let the client read the answer
        while True:
            yield b"more"

    async with scripted(handler) as server, client(server.url) as upstream:
        response = await upstream.send("POST", server.url + "/", [], upload())
        assert (response.status, await body_of(response)) == (413, b"big")


async def test_userinfo_in_the_backend_url_becomes_basic_auth() -> None:
    heads: list[bytes] = []
    async with scripted(answering(OK, heads=heads)) as server:
        url = server.url.replace("http://", "http://svc:p%40ss@")
        async with client(url) as upstream:
            await body_of(await upstream.send("GET", url + "/", [], None))
    assert b"authorization: Basic c3ZjOnBAc3M=\r\n" in heads[0]


async def test_a_backend_url_with_a_path_prefix_keeps_it() -> None:
    heads: list[bytes] = []
    async with (
        scripted(answering(OK, heads=heads)) as server,
        client(server.url + "/base") as upstream,
    ):
        await body_of(await upstream.send("GET", server.url + "/base/x?y=1", [], None))
    assert heads[0].startswith(b"GET /base/x?y=1 HTTP/1.1\r\n")


async def test_a_leading_host_replaces_the_backends_and_its_credentials_stay() -> None:
    heads: list[bytes] = []
    async with scripted(answering(OK, OK, heads=heads)) as server:
        url = server.url.replace("http://", "http://user:pw@")
        async with client(url) as upstream:
            for headers in ([(b"host", b"shop.example:8080")], []):
                response = await upstream.send("GET", url + "/x", headers, None)
                assert (response.status, await body_of(response)) == (200, b"ok")
    hosts = [
        [line for line in head.split(b"\r\n") if line.lower().startswith(b"host:")]
        for head in heads
    ]
    assert hosts == [[b"host: shop.example:8080"], [b"host: " + server.url[7:].encode()]]
    assert all(b"authorization: Basic dXNlcjpwdw==" in head for head in heads)
