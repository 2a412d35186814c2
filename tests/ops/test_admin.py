"""The admin API and the gateway around it: auth, rollout actions, weights reaching the
proxy, transitions reaching metrics and the webhook, config reloads."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
import yaml
from starlette.testclient import TestClient

from cutover.config import load_settings
from cutover.ops.gateway import Gateway
from cutover.ops.listener import Listeners
from cutover.rollout.coordination import Coordination
from cutover.rollout.state import write_atomically
from tests.conftest import LEGACY_URL, NEW_URL
from tests.processes import wait_until

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROXY = "http://testserver:8080"
ADMIN = "http://testserver:9180"
WEBHOOK = "http://hooks.test/cutover"


def write_config(path: Path, **sections) -> None:
    config = {
        "backends": {"legacy": {"url": LEGACY_URL}, "new": {"url": NEW_URL}},
        "split": {"weight": 10, "sticky": "header:X-User-Id"},
        "rollout": {"stages": [10, 50, 100], "hold": 300},
        "guard": {"interval": 60, "webhook": WEBHOOK},
        "state": {"path": str(path.parent / "state.json")},
        **sections,
    }
    path.write_text(yaml.safe_dump(config))


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.MockRouter(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
        router.route(url__startswith=NEW_URL).respond(200, text="new")
        router.post(WEBHOOK).respond(204)
        yield router


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "cutover.yaml"
    write_config(path)
    return path


@pytest.fixture
def gateway(config_path: Path, router: respx.MockRouter, monkeypatch) -> Gateway:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    transport = httpx.MockTransport(router.async_handler)
    return Gateway(
        load_settings(config_path),
        config_path=config_path,
        transport=transport,
        side_transport=transport,
    )


class ByPort:
    """Both listeners under one TestClient (it has no sockets, so no listening socket to
    tell them apart): requests to port 9180 go to the admin app, the rest and the lifespan
    to what `cutover run` serves on the proxy socket."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.listeners = Listeners(gateway)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["server"][1] == 9180:
            await self.gateway.admin(scope, receive, send)
        else:
            await self.listeners(scope, receive, send)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(ByPort(gateway)) as client:
        yield client


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


def test_the_token_guards_everything_but_the_probes(client: TestClient, gateway: Gateway) -> None:
    assert problem(client.get(f"{ADMIN}/status"), 401)["status"] == 401
    wrong = client.get(f"{ADMIN}/status", headers={"Authorization": "Bearer nope"})
    assert problem(wrong, 401)
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert problem(client.post(f"{ADMIN}/rollout/rollback"), 401)
    assert gateway.rollout.phase == "progressing"
    for path in ("/metrics", "/healthz", "/readyz"):
        assert client.get(f"{ADMIN}{path}").status_code == 200
    assert client.get(f"{ADMIN}/status", headers=AUTH).status_code == 200
    failures = gateway.metrics.registry.get_sample_value("cutover_admin_auth_failures_total")
    assert failures == 3


def test_admin_endpoints_are_not_on_the_proxy_listener(client: TestClient) -> None:
    response = client.get(f"{PROXY}/status", headers=AUTH)
    assert response.text in ("legacy", "new")  # forwarded to a backend, not answered


def test_status(client: TestClient) -> None:
    status = client.get(f"{ADMIN}/status", headers=AUTH).json()
    assert status["phase"] == "progressing"
    assert status["weight"] == 10
    assert status["stage"] == 0
    assert [s["weight"] for s in status["stages"]] == [10, 50, 100]
    assert status["history"][0]["actor"] == "startup"


def test_weight_changes_reach_the_proxy(client: TestClient) -> None:
    response = client.put(f"{ADMIN}/split", json={"weight": 100}, headers=AUTH)
    assert response.json()["phase"] == "paused"
    assert {client.get(f"{PROXY}/x", headers={"X-User-Id": f"u{i}"}).text for i in range(20)} == {
        "new"
    }
    client.post(f"{ADMIN}/rollout/rollback", json={"reason": "bad numbers"}, headers=AUTH)
    assert {client.get(f"{PROXY}/x", headers={"X-User-Id": f"u{i}"}).text for i in range(20)} == {
        "legacy"
    }


@pytest.mark.parametrize("body", [{"weight": 101}, {"weight": "50"}, {"weight": True}, {}, [1]])
def test_invalid_weights(client: TestClient, body) -> None:
    detail = problem(client.put(f"{ADMIN}/split", json=body, headers=AUTH), 422)["detail"]
    assert "weight" in detail or "object" in detail


def test_malformed_json(client: TestClient) -> None:
    response = client.put(f"{ADMIN}/split", content=b"{nope", headers=AUTH)
    assert "not valid JSON" in problem(response, 422)["detail"]


def test_actions_and_conflicts(client: TestClient) -> None:
    def act(action: str) -> httpx.Response:
        return client.post(f"{ADMIN}/rollout/{action}", headers=AUTH)

    assert act("promote").json()["weight"] == 50
    assert act("pause").json()["phase"] == "paused"
    assert "only a progressing" in problem(act("pause"), 409)["detail"]
    assert act("resume").json()["phase"] == "progressing"
    assert "after a rollback" in problem(act("restart"), 409)["detail"]
    rolled = act("rollback").json()
    assert (rolled["phase"], rolled["weight"]) == ("rolled_back", 0)
    assert "restart" in problem(act("resume"), 409)["detail"]
    assert act("restart").json()["weight"] == 10
    assert problem(act("dance"), 404)


def test_transitions_reach_metrics_logs_and_webhook(
    client: TestClient, gateway: Gateway, router: respx.MockRouter, caplog
) -> None:
    caplog.set_level("INFO", logger="cutover.rollout")
    client.post(f"{ADMIN}/rollout/promote", headers=AUTH)
    client.post(f"{ADMIN}/rollout/rollback", json={"reason": "bad numbers"}, headers=AUTH)
    registry = gateway.metrics.registry
    assert registry.get_sample_value("cutover_promotions_total") == 1
    assert registry.get_sample_value("cutover_rollbacks_total", {"reason": "operator"}) == 1
    assert registry.get_sample_value("cutover_rollout_phase", {"phase": "rolled_back"}) == 1
    assert registry.get_sample_value("cutover_rollout_phase", {"phase": "progressing"}) == 0
    assert registry.get_sample_value("cutover_split_weight", {"route": "default"}) == 0
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "cutover.rollout"]
    assert [(e["kind"], e["to_weight"]) for e in logged] == [("promote", 50), ("rollback", 0)]
    metrics_page = client.get(f"{ADMIN}/metrics").text
    assert 'cutover_rollout_phase{phase="rolled_back"} 1.0' in metrics_page
    # Delivery runs in the background on the test client's event loop: poll, bounded.
    webhook = router.routes[2]
    for _ in range(200):
        if webhook.call_count >= 2:
            break
        client.get(f"{ADMIN}/healthz")
    payloads = [json.loads(call.request.content) for call in webhook.calls]
    assert [p["kind"] for p in payloads] == ["promote", "rollback"]
    assert payloads[1]["reason"] == "bad numbers"


def test_reload_keeps_the_last_good_config(
    client: TestClient, gateway: Gateway, config_path: Path
) -> None:
    config_path.write_text("split: {weight: 500}\n")
    assert client.portal.call(gateway.reloader.reload) is False
    assert gateway.metrics.registry.get_sample_value("cutover_config_reload_failures_total") == 1
    assert client.get(f"{PROXY}/x", headers={"X-Cutover-Backend": "legacy"}).status_code == 200

    write_config(config_path, deprecation={"deprecated_at": "2026-12-01T00:00:00Z"})
    assert client.portal.call(gateway.reloader.reload) is True
    response = client.get(f"{PROXY}/x", headers={"X-Cutover-Backend": "legacy"})
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
    write_config(config_path, routes=shadow_route, shadow={"log_path": str(tmp_path)})
    wait_until(lambda: failures() == 1, 10, "the failed apply to be counted")
    # Unreadable as a config (not UTF-8).
    config_path.write_bytes(b"split: {weight: 10, sticky: \xff}\n")
    wait_until(lambda: failures() == 2, 10, "the unreadable file to be counted")
    reasons = [r.getMessage() for r in caplog.records if r.name == "cutover.gateway"]
    assert any("shadow.log_path: cannot open" in reason for reason in reasons), reasons
    assert len(reasons) == 2, reasons

    # The watcher is still there: a good edit takes effect.
    write_config(config_path, deprecation={"deprecated_at": "2026-12-01T00:00:00Z"})

    def deprecated() -> bool:
        response = client.get(f"{PROXY}/x", headers={"X-Cutover-Backend": "legacy"})
        return "deprecation" in response.headers

    wait_until(deprecated, 10, "the good edit to be applied")
    assert failures() == 2
    assert gateway.proxy.shadower is None  # nothing of the failed apply stayed


def test_no_token_on_loopback_leaves_the_api_open(config_path, router, monkeypatch) -> None:
    monkeypatch.delenv("CUTOVER_ADMIN_TOKEN", raising=False)
    transport = httpx.MockTransport(router.async_handler)
    gateway = Gateway(load_settings(config_path), transport=transport, side_transport=transport)
    with TestClient(ByPort(gateway)) as client:
        assert client.get(f"{ADMIN}/status").status_code == 200


class Disk:
    """The state file's disk, which can fill up (CI runs as root: chmod stops nothing)."""

    def __init__(self) -> None:
        self.full = False

    def __call__(self, path: Path, payload: bytes) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        write_atomically(path, payload)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/rollout/promote", None),
        ("POST", "/rollout/pause", None),
        ("POST", "/rollout/rollback", {"reason": "bad numbers"}),
        ("PUT", "/split", {"weight": 100}),
    ],
)
def test_an_action_that_cannot_be_saved_is_a_503_and_changes_nothing(
    client: TestClient, gateway: Gateway, router: respx.MockRouter, caplog, method, path, body
) -> None:
    disk = Disk()
    gateway.rollout.store.writer = disk
    state_file = gateway.rollout.store.path

    def rollout() -> tuple:
        status = client.get(f"{ADMIN}/status", headers=AUTH).json()
        return tuple(status[key] for key in ("phase", "weight", "reason", "history"))

    before, saved = rollout(), state_file.read_bytes()
    disk.full = True
    response = client.request(method, f"{ADMIN}{path}", json=body, headers=AUTH)
    detail = problem(response, 503)["detail"]
    assert detail.startswith("the rollout is unchanged: could not save the rollout state")
    assert "No space left on device" in detail
    # memory, file and splitter agree: nothing moved
    assert rollout() == before
    assert state_file.read_bytes() == saved
    assert gateway.proxy.splitter.weight == 10
    registry = gateway.metrics.registry
    assert registry.get_sample_value("cutover_split_weight", {"route": "default"}) == 10
    assert "No space left on device" in caplog.text
    assert router.routes[2].call_count == 0  # no webhook for a transition that did not happen
    disk.full = False
    assert client.request(method, f"{ADMIN}{path}", json=body, headers=AUTH).status_code == 200
    assert gateway.rollout.store.load() == gateway.rollout.state


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_action_waiting_for_the_state_lock_does_not_block_the_loop(
    gateway: Gateway, anyio_backend: str
) -> None:
    """Another worker holds the state lock: the action waits for it in a thread while the
    event loop goes on serving."""
    holding, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        with Coordination(gateway.settings.state.path).state_lock():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert holding.wait(5)
        action = asyncio.ensure_future(gateway.control.pause())
        began = time.monotonic()
        for _ in range(10):
            await asyncio.sleep(0.01)  # the loop turns while the action waits
        assert time.monotonic() - began < 1.0
        assert not action.done()
        release.set()
        transition = await asyncio.wait_for(action, 5)
    finally:
        release.set()
        thread.join(5)
    assert transition.kind == "pause" and gateway.rollout.phase == "paused"
