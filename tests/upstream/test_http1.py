"""The HTTP/1.1 upstream client against scripted servers: framing, keep-alive, failures.

Each server here is a raw asyncio TCP server on the test's own loop that answers with
exact bytes, so the client meets what real servers do (and what they should not)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trustme

from cutover.config import TimeoutsConfig
from cutover.upstream.base import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamReset,
    UpstreamTimeout,
)
from cutover.upstream.http1 import Http1Upstream

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


async def test_a_reset_mid_body_is_an_error_not_a_short_body() -> None:
    handler = answering_then_closing(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
    async with scripted(handler) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        with pytest.raises(UpstreamReset):
            await body_of(response)


async def test_a_silent_backend_times_out() -> None:
    async def handler(reader, writer, _n) -> None:
        await reader.read()

    async with scripted(handler) as server, client(server.url, read=0.2) as upstream:
        with pytest.raises(UpstreamTimeout):
            await upstream.send("GET", server.url + "/", [], None)


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with scripted(answering()) as server:
        url = server.url
    async with client(url) as upstream:
        with pytest.raises(UpstreamConnectError):
            await upstream.send("GET", url + "/", [], None)


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


async def test_a_body_in_a_transfer_coding_other_than_chunked_ends_at_close() -> None:
    handler = answering_then_closing(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n\x1f\x8bdata"
    )
    async with scripted(handler) as server, client(server.url) as upstream:
        response = await upstream.send("GET", server.url + "/", [], None)
        assert await body_of(response) == b"\x1f\x8bdata"


@asynccontextmanager
async def tls_server(ca: trustme.CA, host: str) -> AsyncIterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    server = Server(answering(OK))
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=context)
    server.url = f"https://localhost:{listener.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        listener.close()


async def test_an_https_backend_is_checked_against_the_configured_ca(tmp_path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with tls_server(ca, "localhost") as server:
        upstream = Http1Upstream(server.url, TimeoutsConfig(read=5.0), ca_file=ca_file)
        await upstream.start()
        try:
            response = await upstream.send("GET", server.url + "/", [], None)
            assert (response.status, await body_of(response)) == (200, b"ok")
        finally:
            await upstream.aclose()


@pytest.mark.parametrize("trusted", [False, True], ids=["unknown-ca", "wrong-host"])
async def test_an_https_backend_that_fails_the_check_is_a_connect_error(
    tmp_path, trusted: bool
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with tls_server(ca, "other.example" if trusted else "localhost") as server:
        upstream = Http1Upstream(
            server.url, TimeoutsConfig(read=5.0), ca_file=ca_file if trusted else None
        )
        await upstream.start()
        try:
            with pytest.raises(UpstreamConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await upstream.send("GET", server.url + "/", [], None)
        finally:
            await upstream.aclose()


async def test_a_backend_url_with_a_path_prefix_keeps_it() -> None:
    heads: list[bytes] = []
    async with (
        scripted(answering(OK, heads=heads)) as server,
        client(server.url + "/base") as upstream,
    ):
        await body_of(await upstream.send("GET", server.url + "/base/x?y=1", [], None))
    assert heads[0].startswith(b"GET /base/x?y=1 HTTP/1.1\r\n")


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
