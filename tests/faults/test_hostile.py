"""Hostile input (issue #6): requests a proxy must refuse, or pass on harmlessly.

A real proxy (the production uvicorn settings: uvloop and httptools) in front of a recorder,
a raw asyncio TCP server that keeps every request line, header and body the proxy sends it
and answers ``200 recorded``. Both backends point at the recorder, so it is the only thing
that can receive anything. Each attack goes over a raw socket, byte for byte, and each case
asserts the exact status, what the recorder saw (nothing at all for a refused request, never
a smuggled second request) and that the proxy still serves a plain GET afterwards.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from cutover.config import parse_settings
from cutover.ops.server import uvicorn_config
from tests.servers import serve_config, serve_raw

pytestmark = pytest.mark.e2e

DEADLINE = 5.0
PROMPTLY = 2.0  # an oversized request is answered and the connection closed within this
HEAD_LIMIT = 64 * 1024 * 1024  # the recorder reads heads this big (it must see everything)
MIB = 1024 * 1024

HOST = b"Host: client.example\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: client.example\r\n\r\n"
RECORDED = b"recorded"


# --------------------------------------------------------------------------- the recorder


@dataclass(frozen=True)
class Seen:
    """One request as it reached the upstream: field names lowercased, values as sent."""

    method: bytes
    target: bytes
    version: bytes
    lines: tuple[bytes, ...]  # the raw field lines, to catch anything a parser would merge
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


def parse_head(head: bytes) -> tuple[tuple[bytes, bytes, bytes], list[bytes]]:
    request_line, *lines = head[: -len(b"\r\n\r\n")].split(b"\r\n")
    method, target, version = request_line.split(b" ")
    return (method, target, version), lines


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields
                pass
            return b"".join(body)
        body.append((await reader.readexactly(size + 2))[:-2])


class Recorder:
    """Keeps each request the proxy sends (framed as RFC 9112 says: chunked wins over
    Content-Length) and answers ``200 recorded``; what it cannot parse goes to ``garbage``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Seen] = []
        self._garbage: list[bytes] = []

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._garbage.clear()

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._requests)

    @property
    def garbage(self) -> list[bytes]:
        with self._lock:
            return list(self._garbage)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        self._keep_garbage(exc.partial)
                    return
                try:
                    (method, target, version), lines = parse_head(head)
                    headers = []
                    for line in lines:
                        name, _, value = line.partition(b":")
                        headers.append((name.lower(), value.strip(b" \t")))
                    framing = dict(headers)
                    if b"transfer-encoding" in framing:
                        body = await read_chunked(reader)
                    else:
                        body = await reader.readexactly(int(framing.get(b"content-length", 0)))
                except (ValueError, asyncio.IncompleteReadError):
                    self._keep_garbage(head)
                    return
                with self._lock:
                    self._requests.append(
                        Seen(method, target, version, tuple(lines), tuple(headers), body)
                    )
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + RECORDED)
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError) as exc:
            self._keep_garbage(repr(exc).encode())
        finally:
            writer.close()

    def _keep_garbage(self, data: bytes) -> None:
        with self._lock:
            self._garbage.append(data[:200])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def upstream(recorder: Recorder) -> Iterator[str]:
    with serve_raw(recorder.handle, limit=HEAD_LIMIT) as url:
        yield url


@contextmanager
def run_proxy(upstream: str, **sections: object) -> Iterator[str]:
    """The proxy listener with its production uvicorn settings; both backends are the
    recorder."""
    settings = parse_settings(
        {
            "listen": {"host": "127.0.0.1", "port": 0},
            "backends": {"legacy": {"url": upstream}, "new": {"url": upstream}},
            "split": {"weight": 0},
            **sections,
        }
    )
    with serve_config(uvicorn_config(settings, log_level="warning")) as url:
        yield url


@pytest.fixture(scope="module")
def proxy(upstream: str) -> Iterator[str]:
    with run_proxy(upstream) as url:
        yield url


@pytest.fixture
def seen(recorder: Recorder) -> Recorder:
    recorder.reset()
    return recorder


# --------------------------------------------------------------------------- a raw client


@dataclass(frozen=True)
class Reply:
    status: int  # 0: no response at all
    head: bytes
    body: bytes
    closed: bool  # the proxy closed the connection after answering
    elapsed: float  # from the first byte sent to the end of the response (and the close)


def read_reply(sock: socket.socket, started: float) -> Reply:
    """One response from ``sock``; waits for the close only when it says ``close``."""
    data = b""
    eof = False

    def more() -> bool:
        nonlocal data, eof
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            chunk = b""
        data += chunk
        eof = not chunk
        return not eof

    while b"\r\n\r\n" not in data:
        if not more():
            return Reply(0, data, b"", True, time.monotonic() - started)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    if fields.get(b"transfer-encoding") == b"chunked":
        while not body.endswith(b"0\r\n\r\n") and more():
            body = data.partition(b"\r\n\r\n")[2]
    elif b"content-length" in fields:
        while len(body) < int(fields[b"content-length"]) and more():
            body = data.partition(b"\r\n\r\n")[2]
    else:
        while more():
            pass
        body = data.partition(b"\r\n\r\n")[2]
    if not eof and fields.get(b"connection") == b"close":
        while more():
            pass
    return Reply(status, head, body, eof, time.monotonic() - started)


def exchange(url: str, request: bytes) -> Reply:
    """Send ``request`` as is; the response it gets. A proxy that hangs up mid-request
    (an oversized head) still gets its answer read."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=DEADLINE) as sock:
        started = time.monotonic()
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_reply(sock, started)


def plain_get(url: str) -> Reply:
    return exchange(url, b"GET /after HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")


# --------------------------------------------------------------------------- expectations

Check = Callable[[list[Seen], str], None]


def nothing(requests: list[Seen], upstream: str) -> None:
    """A refused request: the upstream saw nothing at all."""
    assert requests == [], "a refused request reached the upstream"


def forwarded(
    method: bytes = b"GET",
    target: bytes = b"/",
    body: bytes = b"",
    then: Check | None = None,
) -> Check:
    """Passed on harmlessly: exactly one request, this one, the body intact."""

    def check(requests: list[Seen], upstream: str) -> None:
        assert len(requests) == 1, requests
        (request,) = requests
        assert (request.method, request.target, request.body) == (method, target, body)
        if then is not None:
            then(requests, upstream)

    return check


def assert_clean(request: Seen, upstream: str) -> None:
    """What any request the proxy sends must look like, whatever the client sent."""
    assert request.method not in (b"CONNECT", b"TRACE"), request
    assert request.target.startswith(b"/"), request
    assert b"smuggled" not in request.target, f"smuggled request reached the upstream: {request}"
    assert request.version == b"HTTP/1.1", request
    for line in request.lines:
        assert b"\r" not in line and b"\n" not in line and b"\0" not in line, line
        assert b":" in line and b" " not in line.partition(b":")[0], line
    assert request.values(b"host") == [urlsplit(upstream).netloc.encode()], request
    lengths = request.values(b"content-length")
    assert len(lengths) <= 1, request
    assert not (lengths and request.values(b"transfer-encoding")), request
    handshake = request.values(b"sec-websocket-key") != []  # this hop is the upgrade
    for name in (b"upgrade", b"http2-settings", b"te", b"trailer", b"keep-alive"):
        if not (handshake and name == b"upgrade"):
            assert request.values(name) == [], (name, request)


def websocket_handshake(requests: list[Seen], upstream: str) -> None:
    """A WebSocket handshake passed on to the backend on a connection of its own: the
    upgrade kept (the backend's answer, 200 here, comes back and the connection closes)."""
    forwarded()(requests, upstream)
    assert requests[0].values(b"upgrade") == [b"websocket"], requests[0]
    assert requests[0].values(b"connection") == [b"upgrade"], requests[0]
    assert requests[0].values(b"sec-websocket-key") == [b"dGhlIHNhbXBsZSBub25jZQ=="]


def upstream_host(requests: list[Seen], upstream: str) -> None:
    assert requests[0].values(b"host") == [urlsplit(upstream).netloc.encode()]
    assert requests[0].values(b"x-forwarded-host") == [b"evil.example"]


def forwarded_host(value: bytes) -> Check:
    def check(requests: list[Seen], upstream: str) -> None:
        assert requests[0].values(b"x-forwarded-host") == [value]

    return check


def no_header(name: bytes) -> Check:
    def check(requests: list[Seen], upstream: str) -> None:
        assert requests[0].values(name) == [], requests[0]

    return check


@dataclass(frozen=True)
class Case:
    request: bytes
    status: int
    upstream: Check
    closes: bool = False  # the proxy must hang up promptly (it read enough)

    def __repr__(self) -> str:  # keeps a 1 MB request out of failure reports
        return f"Case({self.request[:80]!r}..., {self.status})"


def post(fields: bytes, body: bytes, target: bytes = b"/upload") -> bytes:
    return b"POST " + target + b" HTTP/1.1\r\n" + HOST + fields + b"\r\n" + body


def get(target: bytes, fields: bytes = b"", host: bytes = HOST) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\n" + host + fields + b"\r\n"


URL_64K = get(b"/" + b"a" * 65_000)  # just under httptools.parse_url's own 65,535
LONG_URL = get(b"/" + b"a" * MIB)
LONG_HEADER = get(b"/", b"X-Pad: " + b"a" * MIB + b"\r\n")
MANY_HEADERS = get(b"/", b"".join(b"X-Pad-%05d: %s\r\n" % (i, b"a" * 40) for i in range(20_000)))
CHUNKED_SMUGGLE = b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"
BAD_PERCENT = b"/files/%zz/%/%E0%A4%A/%00%2F..%2f/%C0%AE%C0%AE?q=%G1&r=%%&s=%"

CASES = [
    # ---- framing: Content-Length and Transfer-Encoding
    pytest.param(
        Case(
            post(
                b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % (5 + len(SMUGGLED)),
                b"0\r\n\r\n" + SMUGGLED,
            ),
            400,
            nothing,
        ),
        id="cl-then-te",
    ),
    pytest.param(
        Case(
            post(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", CHUNKED_SMUGGLE),
            400,
            nothing,
        ),
        id="te-then-cl",
    ),
    pytest.param(
        Case(
            post(
                b"Content-Length: 5\r\nContent-Length: %d\r\n" % (5 + len(SMUGGLED)),
                b"hello" + SMUGGLED,
            ),
            400,
            nothing,
        ),
        id="cl-duplicate-differing",
    ),
    pytest.param(
        Case(post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), 400, nothing),
        id="cl-duplicate-equal",
    ),
    pytest.param(Case(post(b"Content-Length: 5, 5\r\n", b"hello"), 400, nothing), id="cl-list"),
    pytest.param(
        Case(post(b"Content-Length: abc\r\n", b"hello"), 400, nothing), id="cl-non-numeric"
    ),
    pytest.param(Case(post(b"Content-Length: -5\r\n", b"hello"), 400, nothing), id="cl-negative"),
    pytest.param(Case(post(b"Content-Length: +5\r\n", b"hello"), 400, nothing), id="cl-plus-sign"),
    pytest.param(
        # 2**64 + 5: a parser that wraps around reads 5.
        Case(post(b"Content-Length: 18446744073709551621\r\n", b"hello" + SMUGGLED), 400, nothing),
        id="cl-overflow",
    ),
    pytest.param(
        Case(post(b"Transfer-Encoding: chunked, identity\r\n", CHUNKED_SMUGGLE), 400, nothing),
        id="te-chunked-not-last",
    ),
    pytest.param(
        Case(post(b"Transfer-Encoding: xchunked\r\n", CHUNKED_SMUGGLE), 400, nothing),
        id="te-unknown-coding",
    ),
    pytest.param(
        Case(post(b"Transfer-Encoding : chunked\r\n", CHUNKED_SMUGGLE), 400, nothing),
        id="te-space-before-colon",
    ),
    pytest.param(
        Case(post(b"Transfer-Encoding: chunked\r\n", b"5\nhello\n0\n\n" + SMUGGLED), 400, nothing),
        id="chunk-size-bare-lf",
    ),
    pytest.param(
        Case(
            post(b"Transfer-Encoding: chunked\r\n", b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
            400,
            nothing,
        ),
        id="chunk-size-overflow",
    ),
    pytest.param(
        Case(
            post(b"Transfer-Encoding: chunked\r\n", CHUNKED_SMUGGLE),
            200,
            forwarded(b"POST", b"/upload", SMUGGLED),
        ),
        id="chunked-body-holding-a-request",
    ),
    pytest.param(
        Case(
            get(b"/", b"Content-Length: %d\r\n" % len(SMUGGLED)) + SMUGGLED,
            200,
            forwarded(b"GET", b"/", SMUGGLED),
        ),
        id="get-body-holding-a-request",
    ),
    pytest.param(
        Case(
            post(b"Connection: Content-Length\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
            200,
            forwarded(b"POST", b"/upload", SMUGGLED),
        ),
        id="connection-names-content-length",
    ),
    # ---- header injection
    pytest.param(
        Case(get(b"/", b"X-Note: a\rX-Injected: yes\r\n"), 400, nothing), id="cr-in-header-value"
    ),
    pytest.param(
        Case(get(b"/", b"X-Note: a\nX-Injected: yes\r\n"), 400, nothing), id="lf-in-header-value"
    ),
    pytest.param(
        Case(get(b"/", b"X-Note: a\0X-Injected: yes\r\n"), 400, nothing), id="nul-in-header-value"
    ),
    pytest.param(
        Case(get(b"/", b"X-Note: a\r\n X-Injected: yes\r\n"), 400, nothing), id="obs-fold"
    ),
    pytest.param(Case(get(b"/", b"X Note: a\r\n"), 400, nothing), id="space-in-header-name"),
    pytest.param(Case(get(b"/", b"X-Note\r\n"), 400, nothing), id="header-without-colon"),
    pytest.param(
        Case(
            get(b"/inject%0d%0aX-Injected:%20yes"),
            200,
            forwarded(target=b"/inject%0d%0aX-Injected:%20yes", then=no_header(b"x-injected")),
        ),
        id="encoded-crlf-in-path",
    ),
    pytest.param(
        Case(
            get(b"/q?a=%0d%0aX-Injected:%20yes"),
            200,
            forwarded(target=b"/q?a=%0d%0aX-Injected:%20yes", then=no_header(b"x-injected")),
        ),
        id="encoded-crlf-in-query",
    ),
    pytest.param(Case(get(b"/caf\xc3\xa9"), 400, nothing), id="raw-utf8-in-path"),
    # ---- sizes
    pytest.param(
        Case(URL_64K, 414, nothing, closes=True),
        id="url-64kib",
    ),
    pytest.param(
        Case(LONG_URL, 414, nothing, closes=True),
        id="url-1mib",
    ),
    pytest.param(
        Case(LONG_HEADER, 431, nothing, closes=True),
        id="header-1mib",
    ),
    pytest.param(
        Case(MANY_HEADERS, 431, nothing, closes=True),
        id="headers-20000",
    ),
    # ---- percent-encoding: the proxy does not interpret the path, the backend does
    pytest.param(Case(get(BAD_PERCENT), 200, forwarded(target=BAD_PERCENT)), id="bad-percent"),
    # ---- methods
    pytest.param(
        # Authority-form never reaches the app: uvicorn cannot parse the target (400).
        Case(b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 400, nothing),
        id="connect",
    ),
    pytest.param(
        Case(b"CONNECT /tunnel HTTP/1.1\r\n" + HOST + b"\r\n" + SMUGGLED, 405, nothing),
        id="connect-origin-form",
    ),
    pytest.param(
        Case(b"TRACE / HTTP/1.1\r\n" + HOST + b"Cookie: session=secret\r\n\r\n", 405, nothing),
        id="trace",
    ),
    pytest.param(
        Case(
            get(
                b"/",
                b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            ),
            200,
            websocket_handshake,
            closes=True,
        ),
        id="websocket-upgrade",
    ),
    pytest.param(
        Case(
            get(
                b"/",
                b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
            ),
            200,
            forwarded(then=no_header(b"connection")),
        ),
        id="h2c-upgrade",
    ),
    # ---- Host and the request target
    pytest.param(
        Case(get(b"/", host=b"Host: evil.example\r\n"), 200, forwarded(then=upstream_host)),
        id="host-spoof",
    ),
    pytest.param(
        Case(
            get(b"/", b"X-Forwarded-Host: evil.example\r\n"),
            200,
            forwarded(then=forwarded_host(b"client.example")),
        ),
        id="x-forwarded-host-spoof",
    ),
    pytest.param(
        Case(get(b"/", host=HOST + b"Host: evil.example\r\n"), 400, nothing),
        id="host-duplicate",
    ),
    pytest.param(
        Case(get(b"/", host=b""), 400, nothing),
        id="host-missing",
    ),
    pytest.param(
        Case(get(b"/", host=b"Host: evil.example/reset?\r\n"), 400, nothing),
        id="host-invalid",
    ),
    pytest.param(
        Case(get(b"http://evil.example/steal?x=1"), 200, forwarded(target=b"/steal?x=1")),
        id="absolute-form",
    ),
    pytest.param(
        Case(get(b"http://127.0.0.1:1@evil.example/steal"), 200, forwarded(target=b"/steal")),
        id="absolute-form-userinfo",
    ),
    pytest.param(
        # No path at all: uvicorn's httptools protocol fails on it (400), harmlessly.
        Case(get(b"http://evil.example"), 400, nothing),
        id="absolute-form-no-path",
    ),
    pytest.param(
        Case(get(b"//evil.example/steal"), 200, forwarded(target=b"//evil.example/steal")),
        id="double-slash-path",
    ),
    pytest.param(Case(get(b"@evil.example/steal"), 400, nothing), id="userinfo-target"),
    pytest.param(Case(get(b"evil.example:80"), 400, nothing), id="authority-form-get"),
    pytest.param(
        Case(b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n", 400, nothing),
        id="asterisk-form",
    ),
    pytest.param(
        Case(get(b"*"), 400, nothing),
        id="asterisk-form-get",
    ),
]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES)
def test_hostile_request(proxy: str, upstream: str, seen: Recorder, case: Case) -> None:
    reply = exchange(proxy, case.request)
    assert reply.status != 500, reply.head
    assert reply.status == case.status, reply.head + b"\r\n\r\n" + reply.body[:200]
    if case.closes:
        assert reply.closed, "the proxy kept the connection open"
        assert reply.elapsed < PROMPTLY, reply.elapsed

    after = plain_get(proxy)
    assert (after.status, after.body) == (200, RECORDED), after.head

    requests = seen.requests
    assert seen.garbage == []
    for request in requests:
        assert_clean(request, upstream)
    assert requests[-1].target == b"/after", requests
    case.upstream(requests[:-1], upstream)


def drip(url: str, head: tuple[bytes, bytes, bytes], total: int) -> tuple[int, Reply]:
    """Send ``start``, then ``piece`` after ``piece`` up to ``total`` bytes (pausing so the
    proxy keeps up) and ``end``, stopping as soon as the proxy answers.
    (Bytes sent, its answer.)"""
    start, piece, end = head
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=DEADLINE) as sock:
        started = time.monotonic()
        sent = 0
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(start)
            sent = len(start)
            while sent < total and not select.select([sock], [], [], 0.01)[0]:
                sock.sendall(piece)
                sent += len(piece)
            if sent >= total:
                sock.sendall(end)
        return sent, read_reply(sock, started)


PAD = b"a" * 65536


@pytest.mark.parametrize(
    ("head", "status"),
    [
        pytest.param(
            (b"GET /", PAD, b" HTTP/1.1\r\n" + HOST + b"\r\n"),
            414,
            id="url",
        ),
        pytest.param(
            (b"GET / HTTP/1.1\r\n" + HOST + b"X-Pad: ", PAD, b"\r\n\r\n"),
            431,
            id="header",
        ),
    ],
)
def test_endless_head_is_cut_off(
    proxy: str, seen: Recorder, head: tuple[bytes, bytes, bytes], status: int
) -> None:
    """A head that goes on and on: the proxy answers and hangs up after reading at most
    its limit (well under 1 MiB), so its memory cannot balloon."""
    sent, reply = drip(proxy, head, 4 * MIB)
    assert reply.status == status, reply.head
    assert sent < MIB, f"the proxy read {sent} bytes of one request head"
    assert reply.closed, "the proxy kept the connection open"
    assert seen.requests == [], "an oversized request reached the upstream"


def test_a_request_that_cannot_be_forwarded_holds_no_backend_slot(
    upstream: str, seen: Recorder
) -> None:
    """Three requests the proxy cannot forward, with room for two in flight: the next
    plain request still gets through (no slot of the backend's capacity leaked)."""
    limits = {"max_concurrent_per_backend": 2, "queue_timeout": 0.5}
    with run_proxy(upstream, limits=limits) as url:
        replies = [exchange(url, b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n") for _ in range(3)]
        after = plain_get(url)
    assert (after.status, after.body) == (200, RECORDED), after.head + after.body
    assert [reply.status for reply in replies] == [400, 400, 400]
