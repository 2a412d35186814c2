"""End to end: the proxy under production uvicorn settings, real upstream servers on free
ports, a real HTTP client. Every byte crosses real sockets twice."""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import json
import random
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from http.server import SimpleHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trustme

from cutover.config import parse_settings
from cutover.ops.assembly import create_app
from cutover.ops.server import bind, server_config, uvicorn_config
from cutover.request.metrics import Metrics
from cutover.rollout.sources import MemoryScraper
from cutover_demo.legacy_backend.app import create_app as create_legacy_app
from cutover_demo.new_backend.app import create_app as create_new_app
from tests.servers import free_socket, serve, serve_config, serve_raw, serve_stdlib

pytestmark = pytest.mark.e2e

DEPRECATED_AT = datetime(2026, 12, 1, tzinfo=UTC)
SUNSET_AT = datetime(2027, 6, 1, tzinfo=UTC)
MIGRATION_GUIDE = "https://example.com/migration-guide"
DEPRECATION = {
    "deprecated_at": "2026-12-01T00:00:00Z",
    "sunset_at": "2027-06-01T00:00:00Z",
    "link": MIGRATION_GUIDE,
    "legacy_headers": True,
}
DEPRECATION_HEADERS = ("deprecation", "sunset", "link", "x-api-deprecation", "x-api-sunset")
ENGINES = {"legacy": "legacy-simulator", "new": "trade-engine"}
BACKTEST = {"strategy": "buy_and_hold", "start": "2023-01-02", "end": "2023-03-31"}

CHUNK = 64 * 1024
BIG = 64 * 1024 * 1024
_BLOCK = random.Random(20261201).randbytes(CHUNK)
GZIP_PLAIN = b"".join(b"line %d of a compressible body\n" % i for i in range(2000))
GZIP_BODY = gzip.compress(GZIP_PLAIN, mtime=0)
SIZED_BODY = b"s" * 12345
SET_COOKIES = (
    b"session=alice; Path=/; HttpOnly",
    b"theme=dark; Path=/",
    b"csrf=abc123; Path=/; Secure; SameSite=Strict",
)

DEADLINE = 5.0


# --------------------------------------------------------------------------- helpers


def big_chunks(total: int = BIG) -> Iterator[bytes]:
    """``total`` bytes in 64 KiB chunks, each one distinct (its index leads it)."""
    for index in range(total // CHUNK):
        yield index.to_bytes(8, "big") + _BLOCK[8:]


def digest(chunks: Iterator[bytes]) -> tuple[int, str]:
    hasher = hashlib.sha256()
    length = 0
    for chunk in chunks:
        hasher.update(chunk)
        length += len(chunk)
    return length, hasher.hexdigest()


def client(base_url: str, **kwargs: Any) -> httpx.Client:
    """A client that never stores cookies and ignores proxy environment variables."""
    no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    kwargs.setdefault("timeout", 10.0)
    return httpx.Client(base_url=base_url, trust_env=False, cookies=no_cookies, **kwargs)


def header_values(headers: list[list[str]], name: str) -> list[str]:
    return [value for key, value in headers if key == name]


@contextmanager
def run_proxy(legacy: str, new: str, **sections: Any) -> Iterator[str]:
    """The gateway with its production uvicorn settings, backends at the given URLs."""
    settings = parse_settings(
        {
            "listen": {"host": "127.0.0.1", "port": 0},
            "backends": {"legacy": {"url": legacy}, "new": {"url": new}},
            **sections,
        }
    )
    with serve_config(uvicorn_config(settings, log_level="warning")) as url:
        yield url


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send raw bytes to the server at ``url``; everything it sends until it closes."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=DEADLINE) as sock:
        sock.sendall(request)
        received = []
        while chunk := sock.recv(65536):
            received.append(chunk)
    return b"".join(received)


def split_response(raw: bytes) -> tuple[bytes, bytes]:
    """(head, body) of one raw HTTP/1.1 response, de-chunked if it was chunked."""
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"\r\ntransfer-encoding: chunked" not in head.lower():
        return head, body
    decoded = []
    while True:
        size, _, body = body.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            return head, b"".join(decoded)
        decoded.append(body[:length])
        body = body[length + 2 :]


# --------------------------------------------------------------------------- upstreams


async def read_all(receive: Any) -> bytes:
    body = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(body)


async def wait_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Lab:
    """A scriptable raw-ASGI upstream: ``/lab/<behaviour>``, anything else is echoed.

    Tests talk to a running behaviour through ``event(token)``: thread-safe events the
    upstream sets (it noticed something) or waits on (the test releases it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits: Counter[str] = Counter()
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def event(self, token: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(token, threading.Event())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        self.hits[path] += 1
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
        handler = getattr(self, "do_" + path.removeprefix("/lab/"), None)
        if not path.startswith("/lab/") or handler is None:
            handler = self.echo
        await handler(scope, receive, send, query)

    async def echo(self, scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
        body = await read_all(receive)
        payload = {
            "upstream": self.name,
            "method": scope["method"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body_length": len(body),
        }
        data = json.dumps(payload).encode()
        await respond(send, 200, [(b"content-type", b"application/json")], data)

    async def do_download(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        size = int(query["size"])
        headers = [(b"content-type", b"application/octet-stream")]
        if query.get("framing") == "length":
            headers.append((b"content-length", str(size).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in big_chunks(size):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def do_upload(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        hasher = hashlib.sha256()
        length = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            hasher.update(chunk)
            length += len(chunk)
            if not message.get("more_body", False):
                break
        headers = dict(scope["headers"])
        framing = {
            "content-length": headers.get(b"content-length", b"").decode(),
            "transfer-encoding": headers.get(b"transfer-encoding", b"").decode(),
        }
        data = json.dumps({"length": length, "sha256": hasher.hexdigest(), **framing}).encode()
        await respond(send, 200, [(b"content-type", b"application/json")], data)

    async def do_sse(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        release = self.event(query["token"])
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        # Event 2 is sent only once the test saw event 1 arrive through the proxy.
        released = await asyncio.get_running_loop().run_in_executor(None, release.wait, 10.0)
        event = b"data: 2\n\n" if released else b"data: timeout\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": False})

    async def do_forever(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        gone = self.event(query["token"])
        disconnected = asyncio.Event()

        async def watch() -> None:
            await wait_disconnect(receive)
            disconnected.set()

        watcher = asyncio.ensure_future(watch())
        try:
            headers = [(b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if query.get("mode") == "idle":  # a little, then silence (a quiet event stream)
                await send({"type": "http.response.body", "body": b"." * 32768, "more_body": True})
                await disconnected.wait()
            while not disconnected.is_set():
                await send({"type": "http.response.body", "body": b"." * 512, "more_body": True})
                await asyncio.sleep(0.002)
        finally:
            watcher.cancel()
            gone.set()

    async def do_slow(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        gone = self.event(query["token"])
        try:
            await asyncio.wait_for(wait_disconnect(receive), float(query.get("wait", 5)))
        except TimeoutError:
            await respond(send, 200, [(b"content-type", b"text/plain")], b"too late")
        else:
            gone.set()

    async def do_cookies(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        headers = [(b"set-cookie", value) for value in SET_COOKIES]
        await respond(send, 200, [(b"content-type", b"text/plain"), *headers], b"ok")

    async def do_gzip(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        headers = [
            (b"content-type", b"text/plain"),
            (b"content-encoding", b"gzip"),
            (b"vary", b"Accept-Encoding"),
            (b"content-length", str(len(GZIP_BODY)).encode()),
        ]
        await respond(send, 200, headers, GZIP_BODY)

    async def do_redirect(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        headers = [(b"location", b"/lab/target"), (b"content-length", b"0")]
        await respond(send, 302, headers, b"")

    async def do_target(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        await respond(send, 200, [(b"content-type", b"text/plain")], b"redirect was followed")

    async def do_status(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        status = int(query["code"])
        headers = [(b"etag", b'"v1"')] if status == 304 else []
        await respond(send, status, headers, b"")

    async def do_sized(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(SIZED_BODY)).encode()),
        ]
        body = b"" if scope["method"] == "HEAD" else SIZED_BODY
        await respond(send, 200, headers, body)

    async def do_hop(self, scope: Any, receive: Any, send: Any, query: dict[str, str]):
        headers = [
            (b"content-type", b"text/plain"),
            (b"connection", b"x-resp-hop"),
            (b"x-resp-hop", b"secret"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-authenticate", b'Basic realm="upstream"'),
            (b"x-end-to-end", b"kept"),
        ]
        await respond(send, 200, headers, b"ok")


async def raw_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP/1.1 upstream written by hand, for what a well-behaved server won't do.

    ``/ok``            200 "ok" (keep-alive)
    ``/not-modified``  304 with a Content-Length, as RFC 9110 section 8.6 allows
    ``/cut?framing=length|chunked&end=close|reset``  promises 1 MB, dies after 100 KB
    ``/garbage``       not HTTP at all
    ``/hangup``        closes without answering
    """
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            parts = urlsplit(head.split(b" ", 2)[1].decode("latin-1"))
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/ok":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            elif parts.path == "/not-modified":
                writer.write(
                    b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 12345\r\n\r\n'
                )
            elif parts.path == "/garbage":
                writer.write(b"THIS IS NOT HTTP\r\n\r\n")
                return
            elif parts.path == "/hangup":
                return
            elif parts.path == "/cut":
                sent = b"x" * 100_000
                if query["framing"] == "length":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + sent)
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    writer.write(b"%x\r\n%s\r\n" % (len(sent), sent))
                await writer.drain()
                if query["end"] == "reset":
                    writer.transport.abort()
                return
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    """Both demo backends behind the proxy: 50 % split, sticky on X-User-Id, deprecation."""
    with (
        serve(create_legacy_app()) as legacy,
        serve(create_new_app()) as new,
        run_proxy(
            legacy,
            new,
            split={"weight": 50, "sticky": "header:X-User-Id"},
            deprecation=DEPRECATION,
        ) as url,
    ):
        yield url


@pytest.fixture(scope="module")
def labs() -> dict[str, Lab]:
    return {"legacy": Lab("legacy"), "new": Lab("new")}


@pytest.fixture(scope="module")
def lab_urls(labs: dict[str, Lab]) -> Iterator[dict[str, str]]:
    with serve(labs["legacy"]) as legacy, serve(labs["new"]) as new:
        yield {"legacy": legacy, "new": new}


@pytest.fixture(scope="module")
def lab(labs: dict[str, Lab]) -> Lab:
    """The upstream the lab proxy sends everything to (weight 0: always legacy)."""
    return labs["legacy"]


@pytest.fixture(scope="module")
def lab_proxy(lab_urls: dict[str, str]) -> Iterator[str]:
    with run_proxy(lab_urls["legacy"], lab_urls["new"], split={"weight": 0}) as url:
        yield url


@pytest.fixture(scope="module")
def raw_proxy(lab_urls: dict[str, str]) -> Iterator[str]:
    """The proxy in front of ``raw_upstream`` (legacy; weight 0 sends everything there)."""
    with serve_raw(raw_upstream) as raw, run_proxy(raw, lab_urls["new"]) as url:
        yield url


@pytest.fixture
def token(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name}-{time.monotonic_ns()}"


# --------------------------------------------------------------------------- 1. demo backends


def execute(
    http: httpx.Client, headers: dict[str, str], backtest_id: str = "bt-1"
) -> httpx.Response:
    response = http.post(f"/api/v1/backtests/{backtest_id}/execute", json=BACKTEST, headers=headers)
    assert response.status_code == 200, response.text
    return response


def test_override_reaches_each_backend_and_only_legacy_is_deprecated(demo: str) -> None:
    with client(demo) as http:
        legacy = execute(http, {"X-Cutover-Backend": "legacy"})
        new = execute(http, {"X-Cutover-Backend": "new"})

    assert legacy.json()["engine"] == "legacy-simulator"
    assert legacy.json()["backtest_id"] == "bt-1"
    assert legacy.headers["x-cutover-backend"] == "legacy"
    assert new.json()["engine"] == "trade-engine"
    assert new.headers["x-cutover-backend"] == "new"

    headers = legacy.headers
    assert headers["deprecation"] == f"@{int(DEPRECATED_AT.timestamp())}"
    sunset = headers["sunset"]
    assert sunset.endswith(" GMT")
    assert parsedate_to_datetime(sunset) == SUNSET_AT
    assert sorted(headers.get_list("link")) == [
        f'<{MIGRATION_GUIDE}>; rel="deprecation"',
        f'<{MIGRATION_GUIDE}>; rel="sunset"',
    ]
    assert "2026-12-01" in headers["x-api-deprecation"]
    assert headers["x-api-sunset"] == "2027-06-01"

    for name in DEPRECATION_HEADERS:
        assert name not in new.headers, name


def test_sticky_header_pins_a_user_and_splits_users(demo: str) -> None:
    with client(demo) as http:
        for user in ("alice", "bob", "carol"):
            engines = {execute(http, {"X-User-Id": user}).json()["engine"] for _ in range(10)}
            assert len(engines) == 1, (user, engines)

        counts: Counter[str] = Counter()
        for index in range(400):
            response = execute(http, {"X-User-Id": f"user-{index}"}, f"bt-{index}")
            backend = response.headers["x-cutover-backend"]
            assert response.json()["engine"] == ENGINES[backend]
            counts[backend] += 1

    # Binomial(400, 0.5): mean 200, sd 10; 4.5 sd either side.
    assert 155 <= counts["new"] <= 245, counts
    assert counts["legacy"] + counts["new"] == 400


# --------------------------------------------------------------------------- 2. failures


def test_dead_upstream_is_a_502_problem(lab_urls: dict[str, str]) -> None:
    dead = free_socket()  # bound, never listening: connections are refused
    try:
        host, port = dead.getsockname()[:2]
        with run_proxy(f"http://{host}:{port}", lab_urls["new"]) as url, client(url) as http:
            response = http.get("/api/v1/strategies")
    finally:
        dead.close()

    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-cutover-backend"] == "legacy"
    problem = response.json()
    assert problem["status"] == 502
    assert problem["title"] == "Bad Gateway"
    assert problem["type"].startswith("urn:cutover:problem:")
    assert "legacy" in problem["detail"]


def test_slow_upstream_is_a_504_problem(labs: dict[str, Lab], lab_urls: dict[str, str]) -> None:
    token = f"slow-{time.monotonic_ns()}"
    with (
        run_proxy(lab_urls["legacy"], lab_urls["new"], timeouts={"read": 0.5}) as url,
        client(url) as http,
    ):
        started = time.monotonic()
        response = http.get(
            "/lab/slow", params={"token": token}, headers={"X-Cutover-Backend": "new"}
        )
        elapsed = time.monotonic() - started

    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 504
    assert problem["title"] == "Gateway Timeout"
    assert problem["type"].startswith("urn:cutover:problem:")
    assert "new" in problem["detail"]
    assert 0.4 <= elapsed < 4.0, elapsed
    # Giving up on the backend also hangs up on it.
    assert labs["new"].event(token).wait(DEADLINE), "upstream never saw the proxy hang up"


@pytest.mark.parametrize("path", ["/garbage", "/hangup"])
def test_broken_upstream_response_is_a_502_problem(raw_proxy: str, path: str) -> None:
    with client(raw_proxy) as http:
        response = http.get(path)
        after = http.get("/ok")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["title"]) == (502, "Bad Gateway")
    assert "legacy" in problem["detail"]
    assert (after.status_code, after.content) == (200, b"ok")


# --------------------------------------------------------------------------- 3. streaming


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_large_download_arrives_complete(lab_proxy: str, framing: str) -> None:
    with (
        client(lab_proxy) as http,
        http.stream("GET", "/lab/download", params={"size": BIG, "framing": framing}) as response,
    ):
        assert response.status_code == 200
        if framing == "length":
            assert response.headers["content-length"] == str(BIG)
        received = digest(response.iter_raw())
    assert received == digest(big_chunks())


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_large_upload_arrives_complete(lab_proxy: str, framing: str) -> None:
    headers = {"Content-Length": str(BIG)} if framing == "length" else {}
    with client(lab_proxy) as http:
        response = http.post("/lab/upload", content=big_chunks(), headers=headers)
    assert response.status_code == 200
    got = response.json()
    assert (got["length"], got["sha256"]) == digest(big_chunks())
    if framing == "chunked":
        assert "content-length" not in response.request.headers  # it really went chunked
        assert got["transfer-encoding"] == "chunked"
    else:
        assert (got["content-length"], got["transfer-encoding"]) == (str(BIG), "")


def test_server_sent_events_are_not_buffered(lab: Lab, lab_proxy: str, token: str) -> None:
    release = lab.event(token)
    try:
        with (
            client(lab_proxy, timeout=httpx.Timeout(10.0, read=3.0)) as http,
            http.stream("GET", "/lab/sse", params={"token": token}) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            lines = response.iter_lines()
            try:
                first = next(lines)
            except httpx.ReadTimeout:
                pytest.fail("event 1 was held back by the proxy until the stream went on")
            assert first == "data: 1"
            release.set()
            rest = [line for line in lines if line]
    finally:
        release.set()
    assert rest == ["data: 2"]


# --------------------------------------------------------------------------- 4. disconnects


@pytest.mark.parametrize("mode", ["stream", "idle"])
def test_client_disconnect_drops_the_upstream(
    lab: Lab, lab_proxy: str, token: str, mode: str
) -> None:
    gone = lab.event(token)
    with client(lab_proxy) as http:
        params = {"token": token, "mode": mode}
        with http.stream("GET", "/lab/forever", params=params) as response:
            assert response.status_code == 200
            received = 0
            for chunk in response.iter_raw():
                received += len(chunk)
                if received >= 16 * 1024:
                    # Checked before `break`: leaving iter_raw closes the connection.
                    assert not gone.is_set()  # still streaming while we read
                    break
    # The client connection is closed now; the proxy must hang up on the upstream.
    assert gone.wait(DEADLINE), "the upstream kept streaming after the client left"


def test_client_leaving_before_headers_drops_the_upstream(
    lab: Lab, lab_proxy: str, token: str
) -> None:
    gone = lab.event(token)
    # The upstream holds its answer back for 3 s (or until the proxy hangs up).
    with (
        client(lab_proxy, timeout=httpx.Timeout(5.0, read=0.3)) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.get("/lab/slow", params={"token": token, "wait": 3})
    assert gone.wait(1.5), "the upstream was left working for a client that had gone"


# --------------------------------------------------------------------------- 5. upstream dies


@pytest.mark.parametrize("end", ["close", "reset"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_upstream_dying_mid_body_is_an_error_for_the_client(
    raw_proxy: str, framing: str, end: str
) -> None:
    with client(raw_proxy) as http:
        with http.stream("GET", "/cut", params={"framing": framing, "end": end}) as response:
            assert response.status_code == 200
            received = 0
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                for chunk in response.iter_raw():
                    received += len(chunk)
        assert received <= 100_000

        # The proxy itself is fine, and so is its pool to that backend.
        for _ in range(3):
            ok = http.get("/ok")
            assert (ok.status_code, ok.content) == (200, b"ok")


# --------------------------------------------------------------------------- 6. fidelity


@pytest.mark.parametrize(
    "target",
    [
        "/a%2Fb/c?x=%zz&y=1+2&z=%E2%9C%93",
        "/p%20q//r;s=1/%7Euser?&&a==b&c=%2B%26",
        "/plain",
    ],
)
def test_raw_path_and_query_arrive_byte_exact(lab_proxy: str, target: str) -> None:
    with client(lab_proxy) as http:
        got = http.get(target).json()
    path, _, query = target.partition("?")
    assert got["raw_path"] == path
    assert got["query_string"] == query
    assert got["method"] == "GET"


def test_hop_by_hop_request_headers_never_arrive(lab_proxy: str) -> None:
    sent = {
        "Connection": "keep-alive, X-Hop-Secret",
        "X-Hop-Secret": "do not forward",
        "Keep-Alive": "timeout=5, max=100",
        "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "Proxy-Connection": "keep-alive",
        "Upgrade": "h2c",
        "X-End-To-End": "kept",
    }
    with client(lab_proxy) as http:
        got = http.get("/echo", headers=sent).json()
    names = [name for name, _ in got["headers"]]
    for name in ("x-hop-secret", "keep-alive", "te", "proxy-authorization", "proxy-connection"):
        assert name not in names, name
    assert "upgrade" not in names
    for value in header_values(got["headers"], "connection"):
        assert "x-hop-secret" not in value.lower()
    assert header_values(got["headers"], "x-end-to-end") == ["kept"]


def test_forwarding_headers(lab_proxy: str, lab_urls: dict[str, str]) -> None:
    proxy_host = urlsplit(lab_proxy).netloc
    with client(lab_proxy) as http:
        got = http.get(
            "/echo",
            headers={
                "X-Forwarded-For": "1.2.3.4",
                "X-Forwarded-Proto": "https",  # a client's claim, not a fact
                "X-Forwarded-Host": "spoofed.example",
            },
        ).json()
    headers = got["headers"]
    assert header_values(headers, "x-forwarded-for") == ["1.2.3.4, 127.0.0.1"]
    assert header_values(headers, "x-forwarded-proto") == ["http"]
    assert header_values(headers, "x-forwarded-host") == [proxy_host]
    assert header_values(headers, "via") == ["1.1 cutover"]
    assert header_values(headers, "host") == [urlsplit(lab_urls["legacy"]).netloc]


def test_server_and_date_headers_are_the_upstreams_only(lab_proxy: str) -> None:
    with client(lab_proxy) as http:
        response = http.get("/echo")
    # The upstream (plain uvicorn here) sends one of each; the proxy adds none.
    assert response.headers.get_list("server") == ["uvicorn"]
    assert len(response.headers.get_list("date")) == 1


def test_production_listener_answers_without_nagle_delay(lab_urls: dict[str, str]) -> None:
    # The way `cutover run` serves: a socket from cutover.ops.server.bind(), here on the plain
    # asyncio loop (what runs where uvloop is not installed, e.g. on Windows).
    settings = parse_settings(
        {"backends": {"legacy": {"url": lab_urls["legacy"]}, "new": {"url": lab_urls["new"]}}}
    )
    config = server_config(create_app(settings), log_level="warning", loop="asyncio")
    with serve_config(config, sock=bind("127.0.0.1", 0)) as url, client(url) as http:
        assert http.get("/echo").status_code == 200  # connect, warm the upstream pool
        latencies = []
        for _ in range(15):
            started = time.perf_counter()
            assert http.get("/echo").status_code == 200
            latencies.append(time.perf_counter() - started)
    # A keep-alive round trip through the proxy takes ~2 ms here; a delayed ACK, 40 ms.
    assert statistics.median(latencies) < 0.020, latencies


def test_hop_by_hop_response_headers_are_removed(lab_proxy: str) -> None:
    with client(lab_proxy) as http:
        response = http.get("/lab/hop")
    assert response.status_code == 200
    for name in ("x-resp-hop", "keep-alive", "proxy-authenticate"):
        assert name not in response.headers, name
    assert response.headers["x-end-to-end"] == "kept"
    assert response.headers.get_list("via") == ["1.1 cutover"]


def test_every_set_cookie_reaches_the_client(lab_proxy: str) -> None:
    with client(lab_proxy) as http:
        response = http.get("/lab/cookies")
    assert response.headers.get_list("set-cookie") == [value.decode() for value in SET_COOKIES]


def test_gzip_body_passes_through_compressed(lab_proxy: str) -> None:
    with (
        client(lab_proxy) as http,
        http.stream("GET", "/lab/gzip", headers={"Accept-Encoding": "gzip"}) as response,
    ):
        raw = b"".join(response.iter_raw())
        headers = response.headers
    assert headers["content-encoding"] == "gzip"
    assert headers["content-length"] == str(len(GZIP_BODY))
    assert raw == GZIP_BODY
    assert gzip.decompress(raw) == GZIP_PLAIN


def test_accept_encoding_is_the_clients(lab_proxy: str) -> None:
    with client(lab_proxy) as http:
        got = http.get("/echo", headers={"Accept-Encoding": "br"}).json()
    assert header_values(got["headers"], "accept-encoding") == ["br"]


def test_redirect_is_returned_not_followed(lab: Lab, lab_proxy: str) -> None:
    followed = lab.hits["/lab/target"]
    with client(lab_proxy) as http:
        response = http.get("/lab/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/lab/target"
    assert lab.hits["/lab/target"] == followed


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_statuses_have_no_body(lab_proxy: str, code: int) -> None:
    with client(lab_proxy) as http:
        response = http.get("/lab/status", params={"code": code})
        again = http.get("/echo")  # the same connection is still in sync
    assert response.status_code == code
    assert response.content == b""
    assert "transfer-encoding" not in response.headers
    assert again.status_code == 200
    assert again.json()["raw_path"] == "/echo"

    raw = raw_exchange(
        lab_proxy,
        f"GET /lab/status?code={code} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode(),
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % code)
    assert b"transfer-encoding" not in head.lower()
    assert body == b""


def test_not_modified_with_content_length_reaches_the_client(raw_proxy: str) -> None:
    with client(raw_proxy) as http:
        response = http.get("/not-modified", headers={"If-None-Match": '"v1"'})
    assert response.status_code == 304
    assert response.headers["etag"] == '"v1"'
    assert response.content == b""


def test_not_modified_with_content_length_keeps_the_connection(raw_proxy: str) -> None:
    parts = urlsplit(raw_proxy)
    with socket.create_connection((parts.hostname, parts.port), timeout=DEADLINE) as sock:
        sock.sendall(b"GET /not-modified HTTP/1.1\r\nHost: t\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(65536)):
            head += chunk
        assert head.startswith(b"HTTP/1.1 304 ")
        # A keep-alive client sends its next request on the same connection.
        rest = b""
        try:
            sock.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            while chunk := sock.recv(65536):
                rest += chunk
        except ConnectionError:
            pass
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:80]
    assert rest.endswith(b"\r\n\r\nok")


def test_head_keeps_content_length(lab_proxy: str) -> None:
    with client(lab_proxy) as http:
        head = http.head("/lab/sized")
        get = http.get("/lab/sized")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(SIZED_BODY))
    assert head.content == b""
    assert get.content == SIZED_BODY


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    ],
    ids=["get", "post"],
)
def test_no_informational_response_is_invented(lab_proxy: str, request_bytes: bytes) -> None:
    raw = raw_exchange(lab_proxy, request_bytes)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw[:80]
    assert raw.count(b"HTTP/1.1 ") == 1
    _, body = split_response(raw)
    assert json.loads(body)["body_length"] == (5 if request_bytes.startswith(b"POST") else 0)


# --------------------------------------------------------------------------- 7-8. cookies


def test_cookies_do_not_leak_between_clients(lab_urls: dict[str, str]) -> None:
    # Backends by host name: a client cookie jar (aiohttp's default one included) ignores
    # cookies from bare IP addresses, which would hide a jar in the proxy.
    legacy, new = (lab_urls[name].replace("127.0.0.1", "localhost") for name in ENGINES)
    with run_proxy(legacy, new) as url:
        with httpx.Client(base_url=url, trust_env=False, timeout=10.0) as alice:
            response = alice.get("/lab/cookies")
            assert response.cookies["session"] == "alice"
            # Alice's own next request carries her cookie: it is hers to send.
            mine = alice.get("/echo").json()
            assert any("session=alice" in v for v in header_values(mine["headers"], "cookie"))

        with client(url) as bob:
            theirs = bob.get("/echo").json()
    assert theirs["upstream"] == "legacy"
    assert header_values(theirs["headers"], "cookie") == []


def test_sticky_cookie_is_issued_and_honoured(lab_urls: dict[str, str]) -> None:
    with (
        run_proxy(
            lab_urls["legacy"], lab_urls["new"], split={"weight": 50, "sticky": "cookie:cutover_id"}
        ) as url,
        client(url) as http,
    ):
        seen: Counter[str] = Counter()
        for _ in range(40):
            first = http.get("/echo")
            assert first.status_code == 200
            cookies = [c for c in first.headers.get_list("set-cookie") if "cutover_id=" in c]
            assert len(cookies) == 1, cookies
            name_value, _, attributes = cookies[0].partition("; ")
            assert attributes == "Path=/; HttpOnly; SameSite=Lax"
            value = name_value.removeprefix("cutover_id=")
            assert value
            backend = first.json()["upstream"]
            assert first.headers["x-cutover-backend"] == backend
            seen[backend] += 1

        # Replaying the last visitor's cookie keeps them where they are.
        for _ in range(20):
            again = http.get("/echo", headers={"Cookie": f"other=1; cutover_id={value}"})
            assert again.json()["upstream"] == backend
            assert not any("cutover_id=" in c for c in again.headers.get_list("set-cookie"))

    # 40 fresh visitors at 50 %: both backends get some (P(fail) = 2**-39).
    assert set(seen) == {"legacy", "new"}, seen


@contextmanager
def stdlib_file_server(directory: str) -> Iterator[str]:
    """Python's own ``http.server``: HTTP/1.0, a new connection for every request, closed
    after the answer (a server nobody here wrote, with different habits from uvicorn's)."""
    with serve_stdlib(functools.partial(SimpleHTTPRequestHandler, directory=directory)) as url:
        yield url


def test_an_http_1_0_backend_that_closes_every_connection(tmp_path, lab_urls) -> None:
    payload = random.Random(7).randbytes(300_000)
    (tmp_path / "data.bin").write_bytes(payload)
    with (
        stdlib_file_server(str(tmp_path)) as files,
        run_proxy(files, lab_urls["new"], split={"weight": 0}) as url,
        client(url) as http,
    ):
        for _ in range(5):  # each on a new upstream connection
            response = http.get("/data.bin")
            assert response.status_code == 200
            assert response.content == payload
            assert response.headers["x-cutover-backend"] == "legacy"
        head = http.head("/data.bin")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(payload))
        assert http.get("/missing").status_code == 404
        # It refuses POST and closes: the answer still arrives. The body is small enough for
        # http.server's buffered read of the head to take it in: a large unread body turns the
        # backend's close into a reset, which may destroy its answer before any proxy reads it
        # (the upstream client's own tests answer during an upload with a scripted server).
        refused = http.post("/data.bin", content=payload[:1000])
        assert refused.status_code == 501
        assert http.get("/data.bin").content == payload


def test_an_https_backend_behind_an_internal_ca(tmp_path, lab_urls) -> None:
    ca = trustme.CA()
    ca_file, server_pem = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    tls = {"ssl_certfile": str(server_pem), "ssl_keyfile": str(server_pem)}
    with serve(create_legacy_app(), **tls) as served:
        legacy = served.replace("http://127.0.0.1", "https://localhost")
        backends = {
            "legacy": {"url": legacy, "ca_file": str(ca_file)},
            "new": {"url": lab_urls["new"]},
        }
        with (
            run_proxy(legacy, lab_urls["new"], backends=backends, split={"weight": 0}) as url,
            client(url) as http,
        ):
            response = http.get("/api/v1/strategies")
            assert response.status_code == 200
            assert response.headers["x-cutover-backend"] == "legacy"
            assert "sma_crossover" in response.text
        # The guard's memory scrape trusts the same CA.
        scraper = MemoryScraper(
            {"legacy": legacy + "/metrics"}, Metrics(), ca_files={"legacy": ca_file}
        )

        async def scrape() -> float:
            try:
                return await scraper.scrape("legacy")
            finally:
                await scraper.aclose()

        assert asyncio.run(scrape()) > 0
        # The same backend without its CA: the certificate check fails, the client gets 502.
        backends["legacy"].pop("ca_file")
        with (
            run_proxy(legacy, lab_urls["new"], backends=backends, split={"weight": 0}) as url,
            client(url) as http,
        ):
            response = http.get("/api/v1/strategies")
            assert response.status_code == 502
            assert response.headers["content-type"] == "application/problem+json"
