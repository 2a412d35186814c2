"""Config reloads: what a reload keeps of the running settings; the reloader running one
reload at a time, coalescing the asks made meanwhile; in process, the last good config
kept and the file watcher surviving failures; and end to end, against a real ``cutover
run``, a burst of reloads making one guard loop and a reload leaving the responses in
flight alone.

The end-to-end backends are small ASGI apps in this process (``servers.serve``); every
wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
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
from pydantic import SecretStr
from starlette.testclient import TestClient

from cutover.config import Settings
from cutover.ops.gateway import Gateway
from cutover.ops.reload import Reloader, reloadable
from cutover.request.metrics import Metrics
from tests.conftest import make_settings
from tests.ops import conftest as ops
from tests.processes import ProxyPorts, ProxyProcess, wait_until, write_config
from tests.servers import serve

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


def config_for(ports: ProxyPorts, tmp_path: Path, legacy: str, new: str) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
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


# --------------------------------------------------------------------------- what a reload keeps


def test_a_reload_keeps_what_only_a_restart_changes(caplog: pytest.LogCaptureFixture) -> None:
    old = make_settings(split={"weight": 10}, listen={"port": 8080})
    new = make_settings(split={"weight": 30}, listen={"port": 9090}, timeouts={"read": 7})
    old = old.model_copy(update={"admin_token": SecretStr("a" * 24)})
    new = new.model_copy(update={"admin_token": SecretStr("b" * 24)})
    with caplog.at_level(logging.WARNING, logger="cutover.gateway"):
        kept = reloadable(old, new, live_weight=12)
    assert (kept.listen, kept.admin, kept.state) == (old.listen, old.admin, old.state)
    assert kept.admin_token == old.admin_token
    assert (kept.timeouts.read, kept.split.weight) == (7, 30)  # the rest is the new file's
    assert [r.getMessage() for r in caplog.records] == [
        "config: listen changed; it takes effect after a restart",
        "config: split.weight changed; the live weight is the rollout's (12%), "
        "use `cutover set-weight` to change it",
    ]


# --------------------------------------------------------------------------- one at a time


class SlowApply:
    """An apply that records each call and waits for the test to let it finish."""

    def __init__(self) -> None:
        self.applied: list[Settings] = []
        self.running = 0
        self.most_running = 0
        self.release = asyncio.Event()

    async def __call__(self, settings: Settings) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
            self.applied.append(settings)
        finally:
            self.running -= 1


def reloader_for(path: Path, apply: SlowApply) -> tuple[Reloader, Metrics]:
    ops.write_config(path)
    metrics = Metrics()
    return Reloader(path, apply, metrics.config_reload_failures), metrics


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asks_while_a_reload_runs_make_one_more_reload(
    tmp_path: Path, anyio_backend: str
) -> None:
    apply = SlowApply()
    reloader, _ = reloader_for(tmp_path / "cutover.yaml", apply)
    reloader.start()
    try:
        reloader.request()
        await wait_for(lambda: apply.running == 1)
        for _ in range(20):
            reloader.request()
        apply.release.set()
        await wait_for(lambda: len(apply.applied) == 2)
        await asyncio.sleep(0.1)
        assert len(apply.applied) == 2 and apply.most_running == 1
    finally:
        await reloader.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_unchanged_file_is_not_applied_again(tmp_path: Path, anyio_backend: str) -> None:
    apply = SlowApply()
    apply.release.set()
    path = tmp_path / "cutover.yaml"
    reloader, metrics = reloader_for(path, apply)
    assert await reloader.reload(changed_only=True) is True  # the bytes read at start-up
    assert apply.applied == []
    assert await reloader.reload() is True  # SIGHUP: applied whatever the bytes
    ops.write_config(path, split={"weight": 20})
    assert await reloader.reload(changed_only=True) is True
    assert [s.split.weight for s in apply.applied] == [10, 20]
    path.write_text("split: {weight: 500}\n")
    assert await reloader.reload(changed_only=True) is False
    assert metrics.registry.get_sample_value("cutover_config_reload_failures_total") == 1
    assert len(apply.applied) == 2


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- in process


def test_reload_keeps_the_last_good_config(
    client: TestClient, gateway: Gateway, config_path: Path
) -> None:
    config_path.write_text("split: {weight: 500}\n")
    assert client.portal.call(gateway.reloader.reload) is False
    assert gateway.metrics.registry.get_sample_value("cutover_config_reload_failures_total") == 1
    assert client.get(f"{ops.PROXY}/x", headers={"X-Cutover-Backend": "legacy"}).status_code == 200

    ops.write_config(config_path, deprecation={"deprecated_at": "2026-12-01T00:00:00Z"})
    assert client.portal.call(gateway.reloader.reload) is True
    response = client.get(f"{ops.PROXY}/x", headers={"X-Cutover-Backend": "legacy"})
    assert response.headers["deprecation"] == "@1796083200"
    assert gateway.rollout.weight == 10  # the live weight is the rollout's, not the file's


def test_the_file_watcher_survives_reloads_that_fail(
    client: TestClient, gateway: Gateway, config_path: Path, tmp_path: Path, caplog
) -> None:
    caplog.set_level("ERROR", logger="cutover.gateway")
    registry = gateway.metrics.registry

    def failures() -> float | None:
        return registry.get_sample_value("cutover_config_reload_failures_total")

    # Valid, but applying it fails: the shadow log cannot be opened (it names a directory).
    shadow_route = [{"prefix": "/x", "shadow": {"sample": 1.0}}]
    ops.write_config(config_path, routes=shadow_route, shadow={"log_path": str(tmp_path)})
    wait_until(lambda: failures() == 1, 10, "the failed apply to be counted")
    # Unreadable as a config (not UTF-8).
    config_path.write_bytes(b"split: {weight: 10, sticky: \xff}\n")
    wait_until(lambda: failures() == 2, 10, "the unreadable file to be counted")
    reasons = [r.getMessage() for r in caplog.records if r.name == "cutover.gateway"]
    assert any("shadow.log_path: cannot open" in reason for reason in reasons), reasons
    assert len(reasons) == 2, reasons

    # The watcher is still there: a good edit takes effect.
    ops.write_config(config_path, deprecation={"deprecated_at": "2026-12-01T00:00:00Z"})

    def deprecated() -> bool:
        response = client.get(f"{ops.PROXY}/x", headers={"X-Cutover-Backend": "legacy"})
        return "deprecation" in response.headers

    wait_until(deprecated, 10, "the good edit to be applied")
    assert failures() == 2
    assert gateway.proxy.shadower is None  # nothing of the failed apply stayed


# --------------------------------------------------------------------------- end to end


@pytest.mark.e2e
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


@pytest.mark.e2e
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
