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
import socket
import ssl
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
from cutover.ops import gateway as gateway_module
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
        kept = reloadable(old, new)
    assert (kept.listen, kept.admin, kept.state) == (old.listen, old.admin, old.state)
    assert kept.admin_token == old.admin_token
    assert (kept.timeouts.read, kept.split.weight) == (7, 30)  # the rest is the new file's
    assert [r.getMessage() for r in caplog.records] == [
        "config: listen changed; it takes effect after a restart",
        "config: split.weight changed; the live weight is the rollout's, "
        "use `cutover set-weight default N` to change it",
    ]


def test_a_reload_warns_of_an_edited_starting_weight_by_migration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def settings(weight: float) -> Settings:
        return make_settings(migrations=[{**ops.TRADE_ENGINE, "weight": weight}, ops.STRATEGIES])

    with caplog.at_level(logging.WARNING, logger="cutover.gateway"):
        kept = reloadable(settings(0), settings(30))
    assert kept.migration_list[0].weight == 30
    assert [r.getMessage() for r in caplog.records] == [
        "config: trade-engine's weight changed; the live weight is the rollout's, "
        "use `cutover set-weight trade-engine N` to change it",
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
    # The live weight is the rollout's, not the file's.
    assert gateway.migrations.get("default").weight == 10


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


# --------------------------------------------------------------------------- migrations, in process


def reload(client: TestClient, gateway: Gateway) -> bool:
    assert gateway.reloader is not None
    return client.portal.call(gateway.reloader.reload)


def phases(gateway: Gateway) -> dict[str, tuple[str, float]]:
    return {rollout.name: (rollout.phase, rollout.weight) for rollout in gateway.migrations}


def served(client: TestClient, method: str, path: str, users: int = 40) -> set[str]:
    """Which backends ``users`` sticky users reach on ``path``."""
    return {
        client.request(method, f"{ops.PROXY}{path}", headers={"X-User-Id": f"u{i}"}).text
        for i in range(users)
    }


def requests_counted(gateway: Gateway, migration: str) -> float:
    registry = gateway.metrics.registry
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "cutover_requests"
        for sample in metric.samples
        if sample.name == "cutover_requests_total" and sample.labels["migration"] == migration
    )


def test_a_reload_that_adds_a_migration_starts_it_and_routes_its_prefix(
    tmp_path: Path, router, monkeypatch
) -> None:
    path = tmp_path / "cutover.yaml"
    ops.write_migrations(path, ops.TRADE_ENGINE)
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", ops.TOKEN)
    gateway = ops.make_gateway(path, router)
    with TestClient(ops.ByPort(gateway)) as client:
        promoted = client.post(f"{ops.ADMIN}/migrations/trade-engine/promote", headers=ops.AUTH)
        assert promoted.status_code == 200
        assert served(client, "GET", "/api/v1/strategies/7") == {"legacy"}  # default_backend
        assert requests_counted(gateway, "none") == 40

        ops.write_migrations(path)  # trade-engine and strategies
        assert reload(client, gateway) is True
        assert phases(gateway) == {
            "trade-engine": ("progressing", 50), "strategies": ("progressing", 25),
        }  # fmt: skip
        [started] = gateway.migrations.get("strategies").state.history
        assert (started.kind, started.actor) == ("start", "startup")
        assert started.reason == "added by a config reload: starting"
        assert gateway.proxy.splitter.migrations["trade-engine"].weight == 50
        # Its prefix is its own now: a quarter of the users on new, counted under its name.
        assert served(client, "GET", "/api/v1/strategies/7") == {"legacy", "new"}
        assert requests_counted(gateway, "strategies") == 40
        registry = gateway.metrics.registry
        assert registry.get_sample_value("cutover_split_weight", {"migration": "strategies"}) == 25
        document = client.get(f"{ops.ADMIN}/migrations/strategies", headers=ops.AUTH).json()
        assert (document["phase"], document["weight"], document["stage"]) == ("progressing", 25, 0)
    saved = gateway.migrations.book.store.load()
    assert saved is not None and set(saved) == {"trade-engine", "strategies"}
    assert (saved["trade-engine"].weight, saved["strategies"].weight) == (50, 25)


def test_a_reload_that_removes_a_migration_stops_routing_it_and_keeps_its_history(
    client2: TestClient, gateway2: Gateway, migrations_path: Path
) -> None:
    weight = {"weight": 100}
    set_weight = client2.put(f"{ops.ADMIN}/migrations/trade-engine/weight", json=weight,
                             headers=ops.AUTH)  # fmt: skip
    assert set_weight.status_code == 200
    assert served(client2, "POST", "/api/v1/backtests/run") == {"new"}
    history = gateway2.migrations.get("trade-engine").state.history

    ops.write_migrations(migrations_path, ops.STRATEGIES)
    assert reload(client2, gateway2) is True
    assert phases(gateway2) == {"strategies": ("progressing", 25)}
    # Its requests fall to default_backend, outside every migration.
    before = requests_counted(gateway2, "none")
    assert served(client2, "POST", "/api/v1/backtests/run") == {"legacy"}
    assert requests_counted(gateway2, "none") == before + 40
    gone = client2.get(f"{ops.ADMIN}/migrations/trade-engine", headers=ops.AUTH)
    assert gone.status_code == 404
    listed = client2.get(f"{ops.ADMIN}/migrations", headers=ops.AUTH).json()["migrations"]
    assert [d["name"] for d in listed] == ["strategies"]
    # Its gauges go (a dashboard lists the migrations configured); its counters stay.
    registry = gateway2.metrics.registry
    assert registry.get_sample_value("cutover_split_weight", {"migration": "trade-engine"}) is None
    assert registry.get_sample_value("cutover_split_weight", {"migration": "strategies"}) == 25
    assert (
        registry.get_sample_value(
            "cutover_migration_info", {"migration": "trade-engine", "from": "legacy", "to": "new"}
        )
        is None
    )
    guard = gateway2.guards.guard
    assert guard is not None and set(client2.portal.call(guard.tick)) == {"strategies"}
    # Its history stays in the state file, through the saves of the migrations left.
    assert client2.post(f"{ops.ADMIN}/rollout/promote", headers=ops.AUTH).status_code == 200
    saved = gateway2.migrations.book.store.load()
    assert saved is not None and set(saved) == {"trade-engine", "strategies"}
    assert saved["trade-engine"].history == history
    assert (saved["trade-engine"].phase, saved["trade-engine"].weight) == ("paused", 100)
    assert saved["strategies"].weight == 100


def test_a_removed_migrations_requests_fall_to_the_migration_around_it(
    tmp_path: Path, router, monkeypatch
) -> None:
    api = {"name": "api", "match": {"prefix": "/api/v1"}, "from": "legacy", "to": "new",
           "weight": 100}  # fmt: skip
    path = tmp_path / "cutover.yaml"
    ops.write_migrations(path, ops.TRADE_ENGINE, api)
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", ops.TOKEN)
    gateway = ops.make_gateway(path, router)
    with TestClient(ops.ByPort(gateway)) as client:
        rolled = client.post(f"{ops.ADMIN}/migrations/trade-engine/rollback", headers=ops.AUTH)
        assert rolled.status_code == 200
        assert served(client, "POST", "/api/v1/backtests/run") == {"legacy"}
        ops.write_migrations(path, api)
        assert reload(client, gateway) is True
        assert served(client, "POST", "/api/v1/backtests/run") == {"new"}  # api's, at 100 %
        assert requests_counted(gateway, "api") == 40
    assert phases(gateway) == {"api": ("manual", 100)}


def test_a_migrations_guard_override_takes_effect_in_the_running_guard(
    tmp_path: Path, router, monkeypatch
) -> None:
    """The guard loop goes on (same loop, same window): requests made before the reload
    count in the first evaluation after it, judged against the new threshold."""
    path = tmp_path / "cutover.yaml"
    strict = {**ops.TRADE_ENGINE, "guard": {"min_requests": 1000, "failures_to_rollback": 5}}
    ops.write_migrations(path, strict, ops.STRATEGIES)
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", ops.TOKEN)
    gateway = ops.make_gateway(path, router)
    trade = gateway.migrations.get("trade-engine")
    with TestClient(ops.ByPort(gateway)) as client:
        guard = gateway.guards.guard
        assert guard is not None
        source = guard.observe.__self__  # type: ignore[attr-defined]
        wait_until(lambda: trade.latest, 5, "the guard's first evaluation")
        for _ in range(30):
            answer = client.post(f"{ops.PROXY}/api/v1/backtests/run",
                                 headers={"X-Cutover-Backend": "new"})  # fmt: skip
            assert answer.text == "new"
        client.portal.call(guard.tick)
        assert trade.latest["error_rate"].detail == "30 requests to new in the window, need 1000"

        lenient = {**ops.TRADE_ENGINE, "guard": {"min_requests": 20}}
        ops.write_migrations(path, lenient, ops.STRATEGIES)
        assert reload(client, gateway) is True
        assert gateway.guards.guard is guard and gateway.control.guard is guard
        assert guard.observe.__self__ is source  # type: ignore[attr-defined]
        assert trade.failures_to_rollback == 2  # the override is gone: the guard section's
        results = client.portal.call(guard.tick)
        [error_rate] = [v for v in results["trade-engine"] if v.check == "error_rate"]
        assert (error_rate.result, error_rate.detail) == ("pass", "0 of 30 requests failed")
        [other] = [v for v in results["strategies"] if v.check == "error_rate"]
        assert other.detail == "0 requests to new in the window, need 50"  # its own, as it was
    assert phases(gateway) == {
        "trade-engine": ("progressing", 10), "strategies": ("progressing", 25),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("migrations", "problem"),
    [
        # the same prefix and methods twice
        ([ops.TRADE_ENGINE, {**ops.STRATEGIES, "match": ops.TRADE_ENGINE["match"]}],
         "migrations trade-engine and strategies both match"),
        ([ops.TRADE_ENGINE, {**ops.STRATEGIES, "to": "engine"}], "no backend named 'engine'"),
        ([ops.TRADE_ENGINE, {**ops.STRATEGIES, "name": "Strategies!"}], "migrations.1.name"),
    ],
)  # fmt: skip
def test_an_invalid_migrations_config_keeps_the_last_good_one(
    client2: TestClient, gateway2: Gateway, migrations_path: Path, caplog, migrations, problem
) -> None:
    caplog.set_level("ERROR", logger="cutover.gateway")
    paused = client2.put(f"{ops.ADMIN}/migrations/strategies/weight", json={"weight": 100},
                         headers=ops.AUTH)  # fmt: skip
    assert paused.status_code == 200
    settings, splitter = gateway2.settings, gateway2.proxy.splitter
    ops.write_migrations(migrations_path, *migrations)
    assert reload(client2, gateway2) is False
    registry = gateway2.metrics.registry
    assert registry.get_sample_value("cutover_config_reload_failures_total") == 1
    assert problem in caplog.text
    assert gateway2.settings is settings and gateway2.proxy.splitter is splitter
    assert phases(gateway2) == {
        "trade-engine": ("progressing", 10), "strategies": ("paused", 100),
    }  # fmt: skip
    assert served(client2, "GET", "/api/v1/strategies/7") == {"new"}
    assert requests_counted(gateway2, "strategies") == 40


def test_a_reload_that_fails_to_apply_adds_no_migration(
    tmp_path: Path, router, monkeypatch, caplog
) -> None:
    """Valid, but the dual run's log cannot be opened: the migration it adds is not started
    (before: it was, and /status answered 409 naming a migration that is not configured)."""
    caplog.set_level("ERROR", logger="cutover.gateway")
    path = tmp_path / "cutover.yaml"
    ops.write_migrations(path, ops.TRADE_ENGINE)
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", ops.TOKEN)
    gateway = ops.make_gateway(path, router)
    with TestClient(ops.ByPort(gateway)) as client:
        mirrored = {**ops.STRATEGIES, "shadow": {"sample": 1.0}}
        ops.write_migrations(path, ops.TRADE_ENGINE, mirrored, shadow={"log_path": str(tmp_path)})
        assert reload(client, gateway) is False
        assert "shadow.log_path: cannot open" in caplog.text
        registry = gateway.metrics.registry
        assert registry.get_sample_value("cutover_config_reload_failures_total") == 1
        assert phases(gateway) == {"trade-engine": ("progressing", 10)}
        status = client.get(f"{ops.ADMIN}/status", headers=ops.AUTH)
        assert status.status_code == 200 and status.json()["name"] == "trade-engine"
        assert served(client, "GET", "/api/v1/strategies/7") == {"legacy"}
        assert gateway.proxy.shadower is None
    saved = gateway.migrations.book.store.load()
    assert saved is not None and list(saved) == ["trade-engine"]


def test_a_reload_whose_websocket_origins_fail_keeps_everything_as_it_was(
    tmp_path: Path, router, monkeypatch, caplog
) -> None:
    """Building an https:// backend's TLS context for WebSockets fails (its CA bundle became
    unreadable after the config was checked): the running config stays, the migration the
    new config adds is not started (migrations are reconfigured only once that part is
    built), and the backends built for the new config are closed rather than left open."""
    caplog.set_level("ERROR", logger="cutover.gateway")
    path = tmp_path / "cutover.yaml"
    ops.write_migrations(path, ops.TRADE_ENGINE)
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", ops.TOKEN)
    gateway = ops.make_gateway(path, router)
    closed: list[str] = []  # what the failed reload built and closed again

    def unreadable(settings: Settings, *args: Any) -> Any:
        raise ssl.SSLError("[X509] no certificate or crl found")

    with TestClient(ops.ByPort(gateway)) as client:
        running, guard = gateway.proxy.settings, gateway.guards.guard
        old_upstreams = list(gateway.proxy.upstreams.values())
        build_upstreams = gateway_module.build_upstreams

        def building(settings: Settings, transport: Any) -> Any:
            made = build_upstreams(settings, transport)
            for name, upstream in made.items():
                upstream.aclose = noting(upstream.aclose, closed, f"backend {name}")
            return made

        monkeypatch.setattr(gateway_module, "build_upstreams", building)
        monkeypatch.setattr(gateway_module, "WebSocketForwarder", unreadable)
        ops.write_migrations(
            path, ops.TRADE_ENGINE, ops.STRATEGIES,
            backends={"legacy": {"url": ops.LEGACY_URL}, "new": {"url": "https://new.test"}},
        )  # fmt: skip
        assert reload(client, gateway) is False
        assert "no certificate or crl found" in caplog.text
        assert gateway.proxy.settings is running
        assert list(gateway.proxy.upstreams.values()) == old_upstreams
        assert phases(gateway) == {"trade-engine": ("progressing", 10)}
        assert sorted(closed) == ["backend legacy", "backend new"]
        assert gateway.guards.guard is guard  # the new one was never built
        assert served(client, "GET", "/api/v1/strategies/7") == {"legacy"}
    saved = gateway.migrations.book.store.load()
    assert saved is not None and list(saved) == ["trade-engine"]


def noting(close: Any, closed: list[str], what: str) -> Any:
    async def closing() -> None:
        closed.append(what)
        await close()

    return closing


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


def test_a_reload_changes_the_bounds_on_a_request_head_and_the_clients_deadlines(
    upstreams: dict[str, Upstream], started: list[ProxyProcess], tmp_path: Path
) -> None:
    """``limits`` are the protocol's too: after a reload a head the old bound let through
    gets 431, and a half-sent head gets 408 within the new header_timeout."""
    ports = ProxyPorts.pick()
    base = config_for(ports, tmp_path, upstreams["one"].url, upstreams["two"].url)
    proxy, path = start(started, tmp_path, ports, base)
    padded = {"X-Padding": "a" * 3000}
    assert fresh_get(proxy.url, "/who").status_code == 200
    with httpx.Client(base_url=proxy.url, timeout=5.0, trust_env=False) as client:
        assert client.get("/who", headers=padded).status_code == 200

    limits = {"max_header_bytes": 2048, "header_timeout": 0.3}
    write_config(path, {**base, "limits": limits})
    os.kill(proxy.pid, signal.SIGHUP)

    def refused() -> bool:
        with httpx.Client(base_url=proxy.url, timeout=5.0, trust_env=False) as client:
            return client.get("/who", headers=padded).status_code == 431

    wait_until(refused, DEADLINE, "the reloaded bound on the head", proxy)
    with socket.create_connection(("127.0.0.1", ports.listen), timeout=5.0) as sock:
        began = time.monotonic()
        sock.sendall(b"GET /who HTTP/1.1\r\nHost: example\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        waited = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert waited < 5.0  # the 10 s default would not have answered yet


def test_a_reload_loads_no_ca_bundle_on_the_event_loop(
    client: TestClient, gateway: Gateway, config_path: Path, monkeypatch
) -> None:
    """A reload that rebuilds the guard (its Prometheus client, a scraper per backend), the
    webhook's client and an https:// backend's TLS: each loads a CA bundle, tens of
    milliseconds in which, on the event loop, no request would be served. (Here the HTTP
    clients have the test's transport, so make no TLS context of their own.)"""
    made: list[bool] = []  # per TLS context made: on the event loop?

    def watched(make: Any) -> Any:
        def making(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
                made.append(True)
            except RuntimeError:
                made.append(False)
            return make(*args, **kwargs)

        return making

    transports = httpx._transports.default  # the httpx clients' (the test suite's cache)
    monkeypatch.setattr(ssl, "create_default_context", watched(ssl.create_default_context))
    monkeypatch.setattr(transports, "create_ssl_context", watched(transports.create_ssl_context))
    ops.write_config(
        config_path,
        backends={
            "legacy": {"url": ops.LEGACY_URL, "metrics_url": f"{ops.LEGACY_URL}/metrics"},
            "new": {"url": "https://new.test", "metrics_url": "https://new.test/metrics"},
        },
        guard={"interval": 60, "webhook": "http://hooks.test/other", "source": "prometheus",
               "prometheus": {"url": "http://prometheus.test:9090"}},
    )  # fmt: skip
    assert reload(client, gateway) is True
    assert gateway.fanout.webhook is not None
    assert gateway.fanout.webhook.url == "http://hooks.test/other"
    # The two scrapers' and the https:// backend's for WebSockets, at least.
    assert len(made) >= 3, made
    assert not any(made), made
