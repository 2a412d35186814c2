"""The control plane end to end, against a real ``cutover run``: the admin API only on its
own socket, reloads one at a time however many are asked for at once, and a reload that
leaves the responses in flight alone.

The backends are small ASGI apps in this process (``servers.serve``); every wait polls
with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.processes import ProxyPorts, ProxyProcess, free_port, wait_until, write_config
from tests.servers import serve

pytestmark = pytest.mark.e2e

TOKEN = "control-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEADLINE = 15.0
INTERVAL = 0.5  # guard.interval
READ = 1.0  # timeouts.read: before the fix, old connections were cut READ + 1 s after a reload
CHUNK = b"x" * 1024
CHUNKS = 400


class Upstream:
    """A backend that names itself in every answer (``<name> <path>``), and ``/stream``:
    CHUNKS chunks, one every 50 ms until the test sets the token's event, then the rest at
    once; ``framing=length`` declares the whole length up front."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = ""  # where it is served
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def event(self, token: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(token, threading.Event())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        if scope["path"] == "/stream":
            await self.stream(send, self.event(query["token"]), query.get("framing"))
            return
        body = f"{self.name} {scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    async def stream(self, send: Any, finish: threading.Event, framing: str | None) -> None:
        headers = [(b"content-type", b"application/octet-stream")]
        if framing == "length":
            headers.append((b"content-length", str(CHUNKS * len(CHUNK)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for _ in range(CHUNKS):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
            if not finish.is_set():
                await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    apps = {"one": Upstream("one"), "two": Upstream("two")}
    with serve(apps["one"]) as one, serve(apps["two"]) as two:
        apps["one"].url, apps["two"].url = one, two
        yield apps


@pytest.fixture
def started() -> Iterator[list[ProxyProcess]]:
    processes: list[ProxyProcess] = []
    yield processes
    for process in processes:
        process.close()


def config_for(
    ports: ProxyPorts, tmp_path: Path, legacy: str, new: str, *, admin_host: str = "127.0.0.1"
) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": admin_host, "port": ports.admin},
        "backends": {"legacy": {"url": legacy}, "new": {"url": new}},
        "timeouts": {"read": READ},
        "guard": {"interval": INTERVAL, "window": 3},
        "state": {"path": str(tmp_path / "state.json")},
    }


def start(
    started: list[ProxyProcess],
    tmp_path: Path,
    ports: ProxyPorts,
    config: dict[str, Any],
    **options: Any,
) -> tuple[ProxyProcess, Path]:
    path = tmp_path / "cutover.yaml"
    write_config(path, config)
    proxy = ProxyProcess(tmp_path, path, ports, TOKEN, **options)
    started.append(proxy)
    return proxy.start(), path


def fresh_get(url: str, path: str) -> httpx.Response:
    """One request on a connection of its own (with workers, any of them may accept it)."""
    with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as client:
        return client.get(path, headers=AUTH)


# --------------------------------------------------------------------------- listeners


@pytest.mark.parametrize("workers", [1, 2])
def test_the_client_listener_never_reaches_the_admin_api(
    upstreams: dict[str, Upstream], started: list[ProxyProcess], tmp_path: Path, workers: int
) -> None:
    """listen on 127.0.0.1:P, admin on 127.0.0.2:P: one port, two listening sockets."""
    port = free_port()
    ports = ProxyPorts(port, port)
    one = upstreams["one"].url
    config = config_for(ports, tmp_path, one, one, admin_host="127.0.0.2")
    proxy, _ = start(started, tmp_path, ports, config, admin_host="127.0.0.2", workers=workers)

    for path in ("/status", "/metrics", "/readyz", "/healthz") * 3:
        response = fresh_get(proxy.url, path)
        assert (response.status_code, response.text) == (200, f"one {path}"), response.text
        assert response.headers["x-cutover-backend"] == "legacy"
    with httpx.Client(base_url=proxy.url, timeout=5.0, trust_env=False) as client:
        rollback = client.post("/rollout/rollback", json={"reason": "x"}, headers=AUTH)
    assert rollback.text == "one /rollout/rollback"
    # The admin API is where it was configured, and nothing above reached it.
    status = proxy.status()
    assert status["phase"] == "manual", status
    assert fresh_get(proxy.admin_url, "/readyz").json() == {"status": "ready"}


# --------------------------------------------------------------------------- reloads


def test_a_burst_of_reloads_runs_one_guard_loop(
    upstreams: dict[str, Upstream], started: list[ProxyProcess], tmp_path: Path
) -> None:
    """30 SIGHUPs and 20 edits of the guard section at once: afterwards the guard still
    evaluates once per interval (before: one loop per overlapping reload, each evaluating
    every interval)."""
    ports = ProxyPorts.pick()
    one, two = upstreams["one"].url, upstreams["two"].url
    base = config_for(ports, tmp_path, one, two)
    proxy, path = start(started, tmp_path, ports, base)

    last = 0
    for i in range(50):
        if i % 5 in (0, 2):
            last = i
            # A guard change restarts the guard; the route is how the test sees the edit.
            config = {**base, "guard": {**base["guard"], "min_requests": 20 + i},
                      "routes": [{"prefix": f"/edit-{i}", "backend": "new"}]}  # fmt: skip
            write_config(path, config)
        else:
            os.kill(proxy.pid, signal.SIGHUP)

    wait_until(
        lambda: fresh_get(proxy.url, f"/edit-{last}").text == f"two /edit-{last}",
        DEADLINE,
        "the last edit to be applied",
        proxy,
    )
    assert proxy.metric("cutover_config_reload_failures_total") == 0

    def checks() -> dict[str, float]:
        return {
            check: proxy.metric("cutover_guard_checks_total", check=check)
            for check in ("error_rate", "latency")
        }

    window = 8 * INTERVAL
    first, since = checks(), time.monotonic()
    latest = wait_until(
        lambda: time.monotonic() - since >= window and checks(), window + DEADLINE, "a window"
    )
    elapsed = time.monotonic() - since
    expected = elapsed / INTERVAL
    for check, count in latest.items():
        grown = count - first[check]
        # Once per interval (before: a loop per overlapping reload, 3 to 13 times as many), and
        # still evaluating.
        assert expected / 2 <= grown <= expected + 2, (check, grown, elapsed)
    assert proxy.running(), proxy.describe()


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_a_reload_never_cuts_a_response_in_flight(
    upstreams: dict[str, Upstream],
    started: list[ProxyProcess],
    tmp_path: Path,
    framing: str,
    request: pytest.FixtureRequest,
) -> None:
    """A slow stream from legacy spans a reload that moves legacy to another backend: it
    arrives whole, long after the moment the old clients used to be closed."""
    ports = ProxyPorts.pick()
    one, two = upstreams["one"].url, upstreams["two"].url
    base = config_for(ports, tmp_path, one, two)
    proxy, path = start(started, tmp_path, ports, base)
    token = f"{request.node.name}-{time.monotonic_ns()}"
    finish = upstreams["one"].event(token)

    received = 0
    try:
        with (
            httpx.Client(base_url=proxy.url, timeout=10.0, trust_env=False) as client,
            client.stream("GET", "/stream", params={"token": token, "framing": framing}) as reply,
        ):
            assert reply.status_code == 200
            chunks = reply.iter_raw()
            received += len(next(chunks))

            write_config(path, {**base, "backends": {"legacy": {"url": two}, "new": {"url": two}}})
            os.kill(proxy.pid, signal.SIGHUP)
            wait_until(
                lambda: fresh_get(proxy.url, "/who").text == "two /who",
                DEADLINE,
                "the reload to reach new requests",
                proxy,
            )
            reloaded = time.monotonic()
            for chunk in chunks:
                received += len(chunk)
                if time.monotonic() > reloaded + READ + 1.5:
                    finish.set()  # well past the old cut-off: let the stream end
    finally:
        finish.set()
    assert received == CHUNKS * len(CHUNK)
