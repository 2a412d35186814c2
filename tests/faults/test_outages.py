"""Backend outages against a real ``cutover run`` (issue #6): what a client can rely on when
new dies, hangs, or a backend streams something huge or breaks off mid-body.

1. new is ``kill -9``ed under steady GET load: no client sees an error (legacy answers,
   by fallback or by the open breaker), and once new is back on the same port the breaker
   closes and new's sticky users return to it.
2. new hangs: an idempotent GET falls back to legacy after ``timeouts.read``; a POST (no
   fallback) gets a 504 problem naming the new backend.
3. a 20 MiB response drained slowly by the client arrives byte-exact while the proxy's
   resident memory stays flat (it streams, with backpressure).
4. legacy resets the connection mid-body: the client sees an error, the proxy stays healthy.

Real processes come from tests/processes.py; the odd upstreams of 3 and 4 run in threads of
this process. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from tests.processes import Faults, Process, ProxyPorts, ProxyProcess, Service, wait_until
from tests.servers import serve, serve_raw

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="reads the proxy's memory from /proc"
    ),
]

ADMIN_TOKEN = "outages-admin-token-0123456789"
FAULTS_TOKEN = "outages-faults-token-0123456789"
STRATEGIES = "/api/v1/strategies"
EXECUTE = "/api/v1/backtests/bt-{}/execute"
BODY = {"strategy": "momentum", "symbol": "AAPL"}
FALLBACK = "new-failed"
DEADLINE = 15.0  # for anything that normally takes well under a second or two
READ_TIMEOUT = 0.5
# The guard never has enough requests to judge: it stays out of the way.
QUIET_GUARD = {"interval": 0.5, "window": 3, "min_requests": 10**9}


# --------------------------------------------------------------------------- harness


@dataclass
class Harness:
    tmp_path: Path
    processes: list[Process]

    def backends(self) -> tuple[Service, Service, Faults]:
        """Fresh demo backends for this test (started; stopped at the end)."""
        legacy = Service.legacy(self.tmp_path)
        new = Service.new(self.tmp_path, FAULTS_TOKEN)
        self.processes += [legacy, new]
        legacy.start()
        new.start()
        return legacy, new, Faults(new.url, FAULTS_TOKEN)

    def proxy(
        self, legacy_url: str, new_url: str, *companions: Process, **sections: Any
    ) -> ProxyProcess:
        """``cutover run`` over the two URLs, no rollout section, the guard quiet."""
        ports = ProxyPorts.pick()
        config: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": ports.listen},
            "admin": {"host": "127.0.0.1", "port": ports.admin},
            "backends": {"legacy": {"url": legacy_url}, "new": {"url": new_url}},
            "split": {"weight": 0},
            "guard": QUIET_GUARD,
            "state": {"path": str(self.tmp_path / "state.json")},
            **sections,
        }
        path = self.tmp_path / "cutover.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        proxy = ProxyProcess(self.tmp_path, path, ports, ADMIN_TOKEN)
        proxy.companions = list(companions)
        self.processes.append(proxy)
        return proxy.start()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, [])
    try:
        yield harness
    finally:
        for process in reversed(harness.processes):
            if isinstance(process, ProxyProcess):
                process.close()
            else:
                process.signal_group(signal.SIGCONT)  # in case a test left it stopped
                process.stop()


def full_stderr(process: Process) -> str:
    """Every stderr log the process wrote (all its starts), not just the tail."""
    return "".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(process.log_dir.glob(f"{process.name}.*.stderr.log"))
    )


def assert_no_traceback(proxy: ProxyProcess) -> None:
    """Backend failures are the proxy's business as usual: warning lines, no traceback."""
    log = full_stderr(proxy)
    assert "Traceback" not in log, log[-4000:]
    assert "Exception in ASGI application" not in log, log[-4000:]


# --------------------------------------------------------------------------- GET load


@dataclass(frozen=True)
class GetReply:
    sent: float  # time.monotonic() when sent
    user: str
    status: int  # 0: no response at all
    backend: str  # X-Cutover-Backend; "none" without a response
    fallback: str | None  # X-Cutover-Fallback
    error: str | None  # the transport error, or a wrong body


class GetLoad:
    """``workers`` threads sending ``GET /api/v1/strategies`` through the proxy, one every
    ``period`` seconds each, cycling through ``users`` X-User-Id values; every reply is
    recorded (an exception too: the test counts it as a client error)."""

    def __init__(self, base_url: str, *, workers: int = 6, period: float = 0.015, users: int = 60):
        self.base_url = base_url
        self.workers = workers
        self.period = period
        self.users = [f"user-{i}" for i in range(users)]
        self.replies: list[GetReply] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> GetLoad:
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"get-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15.0)
        assert not any(thread.is_alive() for thread in self._threads), "a load thread hung"

    def _work(self, index: int) -> None:
        users = itertools.cycle(self.users[index :: self.workers] or self.users)
        with httpx.Client(base_url=self.base_url, timeout=10.0, trust_env=False) as client:
            while not self._stop.wait(self.period):
                user = next(users)
                sent = time.monotonic()
                try:
                    response = client.get(STRATEGIES, headers={"X-User-Id": user})
                except httpx.HTTPError as exc:
                    reply = GetReply(sent, user, 0, "none", None, repr(exc))
                else:
                    error = None
                    if response.status_code == 200 and b'"strategies"' not in response.content:
                        error = f"unexpected body {response.content[:200]!r}"
                    reply = GetReply(
                        sent,
                        user,
                        response.status_code,
                        response.headers.get("x-cutover-backend", "?"),
                        response.headers.get("x-cutover-fallback"),
                        error,
                    )
                with self._lock:
                    self.replies.append(reply)

    def since(self, moment: float, until: float = float("inf")) -> list[GetReply]:
        with self._lock:
            return [r for r in self.replies if moment <= r.sent < until]


def bad_replies(replies: list[GetReply]) -> list[GetReply]:
    return [r for r in replies if r.status != 200 or r.error is not None]


# --------------------------------------------------------------------------- 1. new killed


def breaker_state(proxy: ProxyProcess) -> str:
    """The breaker's state, checked to agree between /status and /metrics."""
    state = proxy.status()["breaker"]["state"]
    gauge = proxy.metric("cutover_breaker_state", state=state)
    assert gauge == 1.0, f"/status says {state}, /metrics has {state}={gauge}"
    return state


def test_new_killed_mid_load_costs_clients_nothing_and_the_breaker_recovers(
    harness: Harness,
) -> None:
    legacy, new, faults = harness.backends()
    faults.close()
    proxy = harness.proxy(
        legacy.url,
        new.url,
        legacy,
        new,
        split={"weight": 50, "sticky": "header:X-User-Id"},
        breaker={"cooldown": 1.0},
    )
    assert breaker_state(proxy) == "closed"

    with GetLoad(proxy.url) as load:
        # Every user answered at least once: who is sticky to which side.
        def all_users_seen() -> dict[str, set[str]]:
            sides: dict[str, set[str]] = {}
            for reply in load.since(0.0):
                sides.setdefault(reply.user, set()).add(reply.backend)
            return sides if len(sides) == len(load.users) else {}

        sides = wait_until(all_users_seen, DEADLINE, "a reply for every user", proxy)
        assert all(len(s) == 1 for s in sides.values()), f"not sticky: {sides}"
        new_users = {user for user, s in sides.items() if s == {"new"}}
        legacy_users = {user for user, s in sides.items() if s == {"legacy"}}
        assert new_users and legacy_users, sides
        assert not bad_replies(load.since(0.0)), bad_replies(load.since(0.0))[:5]

        # kill -9 the new backend under load.
        new.kill9()  # returns once it is reaped: nothing sent after this can reach it
        killed = time.monotonic()

        wait_until(lambda: breaker_state(proxy) == "open", DEADLINE, "the breaker to open", proxy)
        assert proxy.metric("cutover_breaker_transitions_total", state="open") >= 1

        # Requests meant for new reach legacy both ways: replayed after failing on new
        # (marked), and sent straight there by the open breaker (unmarked).
        def outage_kinds() -> tuple[int, int] | None:
            meant_for_new = [r for r in load.since(killed) if r.user in new_users]
            fallbacks = sum(r.fallback == FALLBACK for r in meant_for_new)
            redirected = sum(r.fallback is None for r in meant_for_new)
            return (fallbacks, redirected) if fallbacks and redirected >= 20 else None

        wait_until(outage_kinds, DEADLINE, "fallbacks and breaker redirects", proxy)
        # After the cooldown the breaker probes new; new is still dead, so it opens again.
        wait_until(
            lambda: proxy.metric("cutover_breaker_transitions_total", state="open") >= 2,
            DEADLINE, "a failed probe to reopen the breaker", proxy,
        )  # fmt: skip
        assert proxy.metric("cutover_breaker_transitions_total", state="half_open") >= 1
        assert proxy.metric("cutover_breaker_transitions_total", state="closed") == 0

        # new comes back on the same port: the breaker probes it and closes.
        restarted = time.monotonic()
        new.start()
        wait_until(
            lambda: breaker_state(proxy) == "closed", DEADLINE, "the breaker to close", proxy
        )
        closed = time.monotonic()
        assert proxy.metric("cutover_breaker_transitions_total", state="closed") == 1

        # new's sticky users are back on new, legacy's stay on legacy.
        def back_on_new() -> list[GetReply] | None:
            replies = [r for r in load.since(closed) if r.user in new_users]
            return replies if len(replies) >= 3 * len(new_users) else None

        back = wait_until(back_on_new, DEADLINE, "replies for new's users after closing", proxy)
    outage = load.since(killed, restarted)
    everything = load.since(0.0)

    # What a client depends on: not one error, before, during or after the outage.
    bad = bad_replies(everything)
    assert not bad, f"{len(bad)} of {len(everything)} GETs failed, e.g. {bad[:5]}"

    assert {(r.backend, r.fallback) for r in back} == {("new", None)}, back
    assert {(r.backend, r.fallback) for r in load.since(closed) if r.user in legacy_users} == {
        ("legacy", None)
    }
    # While new was down nothing came from it, and only new's users needed a fallback.
    assert {r.backend for r in outage} == {"legacy"}, {r.backend for r in outage}
    assert {r.fallback for r in outage if r.user in legacy_users} == {None}
    assert {r.fallback for r in outage if r.user in new_users} == {FALLBACK, None}
    assert_no_traceback(proxy)


# --------------------------------------------------------------------------- 2. new hangs


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_gateway_timeout_from_new(response: httpx.Response) -> None:
    assert response.status_code == 504, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response
    assert response.headers["x-cutover-backend"] == "new", response.headers
    assert "x-cutover-fallback" not in response.headers, response.headers
    problem = response.json()
    assert problem["status"] == 504, problem
    assert problem["backend"] == "new", problem
    assert "new backend" in problem["detail"], problem


def test_hanging_new_falls_back_for_gets_and_times_out_posts(harness: Harness) -> None:
    legacy, new, faults = harness.backends()
    proxy = harness.proxy(
        legacy.url,
        new.url,
        legacy,
        new,
        split={"weight": 100},  # every request is meant for new (and none is forced)
        timeouts={"read": READ_TIMEOUT},
        breaker={"enabled": False},  # every request tries new: no breaker redirect
    )
    with httpx.Client(base_url=proxy.url, timeout=10.0, trust_env=False) as client:

        def get() -> httpx.Response:
            return client.get(STRATEGIES)

        def post(n: int) -> httpx.Response:
            return client.post(EXECUTE.format(n), json=BODY)

        # Healthy: both go to new.
        for response in (get(), post(0)):
            assert response.status_code == 200, response.text
            assert response.headers["x-cutover-backend"] == "new"
        legacy_times = [
            timed(lambda: client.get(STRATEGIES, headers={"X-Cutover-Backend": "legacy"}))[1]
            for _ in range(3)
        ]
        legacy_time = max(legacy_times)

        # new answers execute 3 s late: the POST is not replayed, the client gets a 504
        # after the read timeout, not after new's 3 s.
        faults.set(extra_latency_ms=3000)
        response, took = timed(lambda: post(1))
        assert_gateway_timeout_from_new(response)
        assert READ_TIMEOUT * 0.9 <= took < READ_TIMEOUT + 1.5, took
        faults.clear()

        # new hangs outright (SIGSTOP: the kernel still accepts connections, nothing
        # answers). The demo's latency fault only delays execute, so it cannot hang a GET.
        new.signal_group(signal.SIGSTOP)
        try:
            for _ in range(3):
                response, took = timed(get)
                assert response.status_code == 200, response.text
                assert response.headers["x-cutover-backend"] == "legacy", response.headers
                assert response.headers["x-cutover-fallback"] == FALLBACK, response.headers
                assert "strategies" in response.json(), response.text
                assert READ_TIMEOUT * 0.9 <= took < READ_TIMEOUT + legacy_time + 1.0, took
            response, took = timed(lambda: post(2))
            assert_gateway_timeout_from_new(response)
            assert took < READ_TIMEOUT + 1.5, took
        finally:
            new.signal_group(signal.SIGCONT)

        # new is back: so are its answers.
        wait_until(lambda: get().headers.get("x-cutover-backend") == "new", DEADLINE,
                   "new answering again", proxy)  # fmt: skip
    assert proxy.metric("cutover_upstream_errors_total", backend="new", kind="timeout") >= 5
    assert proxy.running(), proxy.describe()
    assert_no_traceback(proxy)


# --------------------------------------------------------------------------- 3. big stream

CHUNK = 64 * 1024
CHUNKS = 320  # 20 MiB
UPSTREAM_PAUSE = 0.001  # between the upstream's chunks
CLIENT_RATE = 10 * 2**20  # bytes/s the client drains: slower than the upstream sends
RSS_GROWTH_LIMIT = 10 * 2**20
BLOCK = random.Random(20).randbytes(CHUNK)


def chunk(index: int) -> bytes:
    return index.to_bytes(4, "big") + BLOCK[4:]


def expected_digest(count: int) -> str:
    digest = hashlib.sha256()
    for index in range(count):
        digest.update(chunk(index))
    return digest.hexdigest()


async def streaming_upstream(scope: Any, receive: Any, send: Any) -> None:
    """``/big?chunks=N``: N 64 KiB chunks with a short pause between them; else ``ok``."""
    assert scope["type"] == "http"
    if scope["path"] != "/big":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"ok"})
        return
    count = int(parse_qs(scope["query_string"].decode())["chunks"][0])
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(count * CHUNK).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for index in range(count):
        await send({"type": "http.response.body", "body": chunk(index), "more_body": True})
        await asyncio.sleep(UPSTREAM_PAUSE)
    await send({"type": "http.response.body", "body": b""})


def rss(pid: int) -> int:
    """The resident set size of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class RssSampler:
    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            self.samples.append(rss(self.pid))
            if self._stop.wait(self.interval):
                return


def download(proxy_url: str, count: int, *, paced: bool) -> tuple[int, str]:
    """GET /big through the proxy with a small receive buffer, draining at CLIENT_RATE
    when ``paced``; returns (bytes, sha256)."""
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, CHUNK)])
    digest = hashlib.sha256()
    received = 0
    started = time.monotonic()
    with (
        httpx.Client(base_url=proxy_url, transport=transport, timeout=10.0) as client,
        client.stream("GET", "/big", params={"chunks": count}) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["x-cutover-backend"] == "legacy"
        for data in response.iter_raw(CHUNK):
            digest.update(data)
            received += len(data)
            if paced:
                ahead = started + received / CLIENT_RATE - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    return received, digest.hexdigest()


def test_large_slow_response_streams_byte_exact_in_flat_memory(harness: Harness) -> None:
    with serve(streaming_upstream, lifespan="off") as upstream:
        proxy = harness.proxy(upstream, upstream)
        # Warm up: pools, buffers, the allocator's first arenas.
        assert download(proxy.url, 16, paced=False) == (16 * CHUNK, expected_digest(16))
        baseline = rss(proxy.pid)
        with RssSampler(proxy.pid) as sampler:
            received, digest = download(proxy.url, CHUNKS, paced=True)
    assert received == CHUNKS * CHUNK
    assert digest == expected_digest(CHUNKS), "the body arrived altered"
    assert len(sampler.samples) >= 20, sampler.samples  # it sampled throughout
    growth = max(sampler.samples) - baseline
    assert growth < RSS_GROWTH_LIMIT, (
        f"the proxy's RSS grew by {growth / 2**20:.1f} MiB while relaying 20 MiB "
        f"(baseline {baseline / 2**20:.1f} MiB)"
    )
    assert proxy.running(), proxy.describe()
    assert_no_traceback(proxy)


# --------------------------------------------------------------------------- 4. reset mid-body

CUT_AFTER = 100_000


async def resetting_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``/ok``: 200 "ok" (keep-alive). ``/cut?framing=length|chunked``: promises 1 MB,
    sends 100 KB, then resets the connection (RST, via SO_LINGER 0)."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            parts = urlsplit(head.split(b" ", 2)[1].decode("latin-1"))
            if parts.path == "/cut":
                framing = parse_qs(parts.query)["framing"][0]
                sent = b"x" * CUT_AFTER
                if framing == "length":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + sent)
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    writer.write(b"%x\r\n%s\r\n" % (len(sent), sent))
                await writer.drain()
                writer.transport.abort()
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_upstream_reset_mid_body_is_a_client_error_and_the_proxy_stays_healthy(
    harness: Harness, framing: str
) -> None:
    with serve_raw(resetting_upstream) as upstream:
        proxy = harness.proxy(upstream, upstream)
        with httpx.Client(base_url=proxy.url, timeout=10.0, trust_env=False) as client:
            received = 0
            with client.stream("GET", "/cut", params={"framing": framing}) as response:
                assert response.status_code == 200
                with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                    for data in response.iter_raw():
                        received += len(data)
            assert received <= CUT_AFTER, received  # never more than the upstream sent

            # The proxy is fine, and so is its pool to that backend.
            for _ in range(3):
                ok = client.get("/ok")
                assert (ok.status_code, ok.content) == (200, b"ok")
        health = proxy.admin.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}, health.text
        assert proxy.admin.get("/readyz").status_code == 200
        assert proxy.metric("cutover_upstream_errors_total", backend="legacy") >= 1

    # The failure is logged as a warning, not a traceback.
    wait_until(lambda: "failed mid-response" in full_stderr(proxy), DEADLINE,
               "the proxy's warning about the cut response", proxy)  # fmt: skip
    assert_no_traceback(proxy)
    # uvicorn's "returned without completing response" ERROR is expected here: not logged.
    assert " ERROR" not in full_stderr(proxy), full_stderr(proxy)
    assert proxy.running(), proxy.describe()
