"""The fast path (request/fast_path.py, fast_exchange.py, fast_relay.py) through real
sockets: a real proxy (its production uvicorn settings) in front of raw asyncio backends.
What the full path does for a request, the fast path does too: the backend's framing kept,
the timeouts, the replay on ``from``, the slot freed when the client leaves, pipelining."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cutover.ops.server import uvicorn_config
from tests.conftest import make_settings
from tests.servers import serve_config, serve_raw

pytestmark = pytest.mark.e2e

DEADLINE = 5.0
BIG = bytes(range(256)) * 20_000  # 5 MB, streamed


async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers by path: /chunked, /length, /empty (204), /big (chunked, 5 MB), /silent
    (never), /fail (503), /echo (the request as it came); every answer names the backend's
    port."""
    port = writer.get_extra_info("sockname")[1]
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            target = head.split(b" ", 2)[1]
            name = str(port).encode()
            length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
            body = await reader.readexactly(int(length[1])) if length else b""
            if target.startswith(b"/silent"):
                await reader.read()  # until the proxy gives up on us
                return
            if target.startswith(b"/chunked"):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nhello\r\n3\r\n " + name[:1] + b"!\r\n0\r\n\r\n")  # fmt: skip
            elif target.startswith(b"/empty"):
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            elif target.startswith(b"/big"):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for at in range(0, len(BIG), 65536):
                    piece = BIG[at : at + 65536]
                    writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            elif target.startswith(b"/echo"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b"
                             % (len(head + body), head + body))  # fmt: skip
            elif target.startswith(b"/fail"):
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nfail")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b"
                             % (len(name), name))  # fmt: skip
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@contextmanager
def proxy(**sections: Any) -> Iterator[tuple[str, Any, dict[str, int]]]:
    """The proxy over two raw backends; yields its address, its app and the backends' ports."""
    with serve_raw(backend) as legacy, serve_raw(backend) as new:
        settings = make_settings(backends={"legacy": {"url": legacy}, "new": {"url": new}},
                                 **sections)  # fmt: skip
        config = uvicorn_config(settings, log_level="warning")
        ports = {"legacy": int(legacy.rsplit(":", 1)[1]), "new": int(new.rsplit(":", 1)[1])}
        with serve_config(config) as url:
            yield url, config.app, ports


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=DEADLINE)
    return sock


def read_reply(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[bytes, bytes], bytes]:
    """One response off ``sock`` (``buffer``: what was read past the previous one)."""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536) or b""
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
    body = bytearray()
    if b"content-length" in headers:
        size = int(headers[b"content-length"])
        while len(rest) < size:
            rest += sock.recv(65536)
        body, rest = bytearray(rest[:size]), rest[size:]
    elif headers.get(b"transfer-encoding") == b"chunked":
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                break
    buffer[:] = rest
    return status, headers, bytes(body)


def get(target: str, host: str = "client.example") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\nX-User-Id: u1\r\n\r\n".encode()


def test_answers_keep_the_backends_framing_on_one_connection() -> None:
    with proxy() as (url, app, ports):
        sock, buffer = connect(url), bytearray()
        for target in ("/length", "/chunked", "/empty", "/big"):
            sock.sendall(get(target))
            status, headers, body = read_reply(sock, buffer)
            if target == "/length":
                assert (status, headers[b"content-length"]) == (200, str(len(body)).encode())
                assert int(body) == ports[headers[b"x-cutover-backend"].decode()]
            elif target in ("/chunked", "/big"):
                assert headers[b"transfer-encoding"] == b"chunked"
                assert body == (BIG if target == "/big" else body)
                assert target == "/big" or body.startswith(b"hello ")
            else:
                assert (status, body) == (204, b"")
                assert b"content-length" not in headers and b"transfer-encoding" not in headers
            assert headers[b"via"] == b"1.1 cutover" and len(headers[b"x-request-id"]) == 32
        sock.close()
        assert app.fast_path.taken == 4  # not one of them went through the ASGI cycle


def test_a_silent_backend_gets_504_after_the_read_timeout() -> None:
    with proxy(timeouts={"read": 0.3}) as (url, app, _):
        sock, buffer = connect(url), bytearray()
        started = time.monotonic()
        sock.sendall(get("/silent"))
        status, headers, body = read_reply(sock, buffer)
        took = time.monotonic() - started
        assert status == 504 and headers[b"content-type"] == b"application/problem+json"
        assert json.loads(body)["type"] == "urn:cutover:problem:upstream-timeout"
        assert 0.3 <= took < 0.3 + 1.0  # never early; late by at most the sweep's ticks
        sock.sendall(get("/length"))  # the client's connection is still good
        assert read_reply(sock, buffer)[0] == 200
        assert app.fast_path.taken == 2


def test_a_failing_to_is_replayed_on_from() -> None:
    with proxy(split={"weight": 100}) as (url, app, _):
        sock, buffer = connect(url), bytearray()
        sock.sendall(get("/fail"))
        status, headers, body = read_reply(sock, buffer)
        assert (status, body) == (503, b"fail")  # from served it too: both failed
        assert headers[b"x-cutover-backend"] == b"legacy"
        assert headers[b"x-cutover-fallback"] == b"new-failed"
        assert app.fast_path.taken == 1


def test_a_client_that_leaves_frees_its_backend_slot() -> None:
    limits = {"max_concurrent_per_backend": 1, "queue_timeout": 0.5}
    with proxy(split={"weight": 0}, limits=limits) as (url, app, _):
        leaving = connect(url)
        leaving.sendall(get("/silent"))
        deadline = time.monotonic() + DEADLINE
        while not app.fast_path.inflight and time.monotonic() < deadline:
            time.sleep(0.01)
        leaving.close()
        while app.fast_path.inflight and time.monotonic() < deadline:
            time.sleep(0.01)
        sock, buffer = connect(url), bytearray()
        sock.sendall(get("/length"))
        assert read_reply(sock, buffer)[0] == 200  # not the 503 of a slot still taken
        assert app.fast_path.taken == 2


def test_pipelined_requests_are_answered_in_order() -> None:
    with proxy() as (url, _, _):
        sock, buffer = connect(url), bytearray()
        sock.sendall(get("/length?1") + get("/chunked?2") + get("/empty?3"))
        statuses = [read_reply(sock, buffer)[0] for _ in range(3)]
        assert statuses == [200, 200, 204]


def test_a_small_body_goes_with_its_head_as_the_client_framed_it() -> None:
    with proxy() as (url, app, _):
        sock, buffer = connect(url), bytearray()
        body = b'{"strategy": "momentum"}'
        head = (b"POST /echo HTTP/1.1\r\nHost: client.example\r\nX-User-Id: u1\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))  # fmt: skip
        sock.sendall(head[:20])  # the head and the body in pieces, as a slow client sends them
        time.sleep(0.05)
        sock.sendall(head[20:] + body[:5])
        time.sleep(0.05)
        sock.sendall(body[5:])
        status, _, seen = read_reply(sock, buffer)
        assert status == 200 and seen.endswith(b"\r\n\r\n" + body)
        assert seen.lower().count(b"content-length: %d\r\n" % len(body)) == 1
        sock.sendall(get("/length"))
        assert read_reply(sock, buffer)[0] == 200  # the connection goes on
        assert app.fast_path.taken == 2
