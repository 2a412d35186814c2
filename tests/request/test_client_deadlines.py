"""What a client owes the proxy, and by when (request/client_deadlines.py), through real
sockets against a real proxy (its production uvicorn settings) over a backend that records
every byte it gets: an idle connection closes after ``listen.keep_alive``, a head must be
whole within ``limits.header_timeout``, a body must not pause longer than
``limits.body_timeout``; a late head or body gets 408 and reaches no backend as a request.
Nothing is owed while an answer is pending. A timeout never fires early."""

from __future__ import annotations

import asyncio
import re
import select
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

KEEP_ALIVE = 0.6
HEAD_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
DEADLINE = 5.0  # seconds any of them may take at most, on a loaded machine
SLOW = 1.5  # seconds /slow takes to answer: longer than every client deadline
# The event loop's clock (libuv's) counts milliseconds, and the client starts its own a
# little after the proxy does: "not early" is to within this.
SLACK = 0.01


class Recorder:
    def __init__(self) -> None:
        self.received: list[bytes] = []  # per backend connection, what came in
        self.requests = 0  # requests answered
        self.timeouts: Any = None  # the proxy's count of 408s: timeouts("head" | "body")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = bytearray()
        self.received.append(b"")
        index = len(self.received) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen += head
                self.received[index] = bytes(seen)
                length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
                if length:
                    seen += await reader.readexactly(int(length[1]))
                    self.received[index] = bytes(seen)
                if b" /slow" in head.split(b"\r\n", 1)[0]:
                    await asyncio.sleep(SLOW)
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except asyncio.IncompleteReadError as exc:
            seen += exc.partial
            self.received[index] = bytes(seen)
        except ConnectionError:
            pass
        finally:
            writer.close()


@contextmanager
def proxy() -> Iterator[tuple[tuple[str, int], Recorder]]:
    recorder = Recorder()
    with serve_raw(recorder.handle) as legacy, serve_raw(recorder.handle) as new:
        settings = make_settings(
            backends={"legacy": {"url": legacy}, "new": {"url": new}},
            listen={"keep_alive": KEEP_ALIVE},
            limits={"header_timeout": HEAD_TIMEOUT, "body_timeout": BODY_TIMEOUT},
        )
        config = uvicorn_config(settings, log_level="warning")
        registry = config.app.metrics.registry
        recorder.timeouts = lambda wait: registry.get_sample_value(
            "cutover_client_timeouts_total", {"wait": wait}
        )
        with serve_config(config) as url:
            host, port = url.removeprefix("http://").split(":")
            yield (host, int(port)), recorder


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=DEADLINE)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def closed_after(sock: socket.socket, since: float) -> tuple[bytes, float]:
    """What the proxy wrote before it closed ``sock``, and how long after ``since``."""
    data = read_until_closed(sock)
    return data, time.monotonic() - since


def head(target: str = "/api/x", extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: client.example\r\n{extra}\r\n".encode()


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def test_a_connection_that_sends_nothing_is_closed_after_keep_alive() -> None:
    with proxy() as (address, recorder), connect(address) as sock:
        opened = time.monotonic()
        data, elapsed = closed_after(sock, opened)
    assert data == b""
    assert KEEP_ALIVE - SLACK <= elapsed < DEADLINE
    assert recorder.received == []


def test_an_idle_keep_alive_connection_is_closed_after_keep_alive() -> None:
    with proxy() as (address, recorder), connect(address) as sock:
        sock.sendall(head())
        answered = b""
        while not answered.endswith(b"ok"):
            answered += sock.recv(65536)
        since = time.monotonic()
        data, elapsed = closed_after(sock, since)
    assert status_of(answered) == 200 and data == b""
    assert KEEP_ALIVE - SLACK <= elapsed < DEADLINE
    assert recorder.requests == 1


def test_a_head_that_stops_halfway_gets_408_and_reaches_no_backend() -> None:
    with proxy() as (address, recorder), connect(address) as sock:
        began = time.monotonic()
        sock.sendall(b"GET /api/x HTTP/1.1\r\nHost: client.example\r\nX-Half: ")
        data, elapsed = closed_after(sock, began)
    assert status_of(data) == 408
    assert b"connection: close" in data.lower()
    assert HEAD_TIMEOUT - SLACK <= elapsed < DEADLINE
    assert recorder.received == []
    assert (recorder.timeouts("head"), recorder.timeouts("body")) == (1.0, 0.0)


def test_a_head_trickled_byte_by_byte_is_still_bounded_by_header_timeout() -> None:
    """The head's deadline counts from its first byte, not from the last read (slowloris)."""
    request = head(extra="X-Padding: " + "a" * 500 + "\r\n")
    with proxy() as (address, recorder), connect(address) as sock:
        began = time.monotonic()
        for byte in request[:-1]:  # never whole, however long it goes on
            sock.sendall(bytes([byte]))
            if select.select([sock], [], [], 0.02)[0]:
                break  # the proxy answered: not one byte more
        data, elapsed = closed_after(sock, began)
    assert status_of(data) == 408
    assert HEAD_TIMEOUT - SLACK <= elapsed < DEADLINE
    assert recorder.received == []


@pytest.mark.parametrize("size", [1_000, 200_000], ids=["fast-path body", "streamed body"])
def test_a_body_that_stops_gets_408_and_no_whole_request_reaches_a_backend(size: int) -> None:
    sent = size // 2
    with proxy() as (address, recorder), connect(address) as sock:
        sock.sendall(b"POST /api/x HTTP/1.1\r\nHost: client.example\r\n"
                     b"Content-Length: %d\r\n\r\n%b" % (size, b"x" * sent))  # fmt: skip
        stopped = time.monotonic()
        data, elapsed = closed_after(sock, stopped)
    assert status_of(data) == 408
    assert b"body" in data.split(b"\r\n\r\n", 1)[1]
    assert BODY_TIMEOUT - SLACK <= elapsed < DEADLINE
    assert recorder.requests == 0
    assert (recorder.timeouts("head"), recorder.timeouts("body")) == (0.0, 1.0)
    # A streamed body had begun upstream: its backend connection was cut, never completed.
    assert all(len(got) < size for got in recorder.received)


def test_a_slow_body_that_keeps_coming_is_not_cut() -> None:
    """The body's deadline is between two reads: a body slower in all than body_timeout but
    never pausing that long is forwarded whole."""
    pieces = 8
    with proxy() as (address, recorder), connect(address) as sock:
        sock.sendall(b"POST /api/x HTTP/1.1\r\nHost: client.example\r\n"
                     b"Content-Length: %d\r\n\r\n" % pieces)  # fmt: skip
        began = time.monotonic()
        for _ in range(pieces):
            time.sleep(BODY_TIMEOUT / 4)  # the client's pace, not a wait for the proxy
            sock.sendall(b"x")
        data = b""
        while not data.endswith(b"ok"):
            data += sock.recv(65536)
    assert time.monotonic() - began > BODY_TIMEOUT  # slower in all than the body's timeout
    assert status_of(data) == 200
    assert recorder.requests == 1
    assert recorder.received[0].endswith(b"\r\n\r\n" + b"x" * pieces)


@pytest.mark.parametrize("target", ["/slow", "/slow?then=pipelined"])
def test_nothing_is_owed_while_an_answer_is_pending(target: str) -> None:
    """A backend slower than every client deadline: the client waits, and gets its answer;
    a pipelined request sent behind it (the second case) is answered after it."""
    pipelined = "?" in target
    with proxy() as (address, recorder), connect(address) as sock:
        sock.sendall(head(target) + (head() if pipelined else b""))
        wanted = 2 if pipelined else 1
        data = b""
        while data.count(b"ok") < wanted:
            data += sock.recv(65536)
    assert data.count(b"HTTP/1.1 200 OK") == wanted
    assert recorder.requests == wanted
