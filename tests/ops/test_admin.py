"""The admin API over the gateway's control: auth, rollout actions and their conflicts,
weights reaching the proxy, transitions reaching metrics, logs and the webhook, actions that
cannot be saved."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from cutover.config import load_settings
from cutover.ops.gateway import Gateway
from tests.disks import Disk
from tests.ops.conftest import ADMIN, AUTH, PROXY, ByPort


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


def test_no_token_on_loopback_leaves_the_api_open(config_path, router, monkeypatch) -> None:
    monkeypatch.delenv("CUTOVER_ADMIN_TOKEN", raising=False)
    transport = httpx.MockTransport(router.async_handler)
    gateway = Gateway(load_settings(config_path), transport=transport, side_transport=transport)
    with TestClient(ByPort(gateway)) as client:
        assert client.get(f"{ADMIN}/status").status_code == 200


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
