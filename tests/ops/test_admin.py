"""The admin API over the gateway's control: auth, rollout actions and their conflicts,
weights reaching the proxy, transitions reaching metrics, logs and the webhook, actions that
cannot be saved; and the migrations API (``/migrations/{name}/...``), each action on its
migration only, beside the single-rollout API that only a config of one migration has."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from cutover.config import load_settings
from cutover.ops.gateway import Gateway
from tests.disks import Disk
from tests.ops.conftest import (
    ADMIN,
    AUTH,
    PROXY,
    TOKEN,
    TRADE_ENGINE,
    ByPort,
    make_gateway,
    write_migrations,
)

# Every field of a migration's document: /status's of before migrations, and its config.
DOCUMENT = {
    "name", "match", "from", "to", "phase", "weight", "stage", "stages", "reason", "failure",
    "healthy_for", "next_promotion_in", "consecutive_failures", "baseline_memory_bytes",
    "checks", "history", "breaker", "deprecation",
}  # fmt: skip
# What the guard's evaluations change (its first runs as the gateway starts).
JUDGED = ("checks", "healthy_for", "next_promotion_in")
SEVERAL = "2 migrations are configured (trade-engine, strategies): use /migrations/{name}"


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
    assert gateway.migrations.get("default").phase == "progressing"
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
    default = {"migration": "default"}
    assert registry.get_sample_value("cutover_promotions_total", default) == 1
    rollbacks = {**default, "reason": "operator"}
    assert registry.get_sample_value("cutover_rollbacks_total", rollbacks) == 1
    phase = "cutover_rollout_phase"
    assert registry.get_sample_value(phase, {**default, "phase": "rolled_back"}) == 1
    assert registry.get_sample_value(phase, {**default, "phase": "progressing"}) == 0
    assert registry.get_sample_value("cutover_split_weight", default) == 0
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "cutover.rollout"]
    assert [(e["migration"], e["kind"], e["to_weight"]) for e in logged] == [
        ("default", "promote", 50), ("default", "rollback", 0),
    ]  # fmt: skip
    metrics_page = client.get(f"{ADMIN}/metrics").text
    assert 'cutover_rollout_phase{migration="default",phase="rolled_back"} 1.0' in metrics_page
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
    store = gateway.migrations.book.store
    store.writer = disk
    state_file = store.path

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
    assert gateway.proxy.splitter.migrations["default"].weight == 10
    registry = gateway.metrics.registry
    assert registry.get_sample_value("cutover_split_weight", {"migration": "default"}) == 10
    assert "No space left on device" in caplog.text
    assert router.routes[2].call_count == 0  # no webhook for a transition that did not happen
    disk.full = False
    assert client.request(method, f"{ADMIN}{path}", json=body, headers=AUTH).status_code == 200
    assert store.load() == {"default": gateway.migrations.get("default").state}


# --------------------------------------------------------------------------- the migrations API


def unjudged(document: dict) -> dict:
    return {k: v for k, v in document.items() if k not in JUDGED}


def phases(gateway: Gateway) -> dict[str, tuple[str, float]]:
    return {rollout.name: (rollout.phase, rollout.weight) for rollout in gateway.migrations}


def backends_for(client: TestClient, method: str, path: str) -> set[str]:
    """Which backends 20 users reach on ``path``."""
    return {
        client.request(method, f"{PROXY}{path}", headers={"X-User-Id": f"u{i}"}).text
        for i in range(20)
    }


def test_every_migration_in_config_order(client2: TestClient) -> None:
    documents = client2.get(f"{ADMIN}/migrations", headers=AUTH).json()["migrations"]
    assert [d["name"] for d in documents] == ["trade-engine", "strategies"]
    assert all(set(d) == DOCUMENT for d in documents)
    trade, strategies = documents
    assert trade["match"] == {"prefix": "/api/v1/backtests/", "methods": ["POST"]}
    assert strategies["match"] == {"prefix": "/api/v1/strategies", "methods": None}
    assert (trade["from"], trade["to"]) == (strategies["from"], strategies["to"]) == (
        "legacy", "new",
    )  # fmt: skip
    # Each at its own first stage, on its own stages and holds.
    assert (trade["phase"], trade["weight"], trade["stage"]) == ("progressing", 10, 0)
    assert (strategies["phase"], strategies["weight"], strategies["stage"]) == (
        "progressing", 25, 0,
    )  # fmt: skip
    assert [s["weight"] for s in trade["stages"]] == [10, 50, 100]
    assert [(s["weight"], s["hold"]) for s in strategies["stages"]] == [(25, 600), (100, 600)]
    assert trade["history"][0]["actor"] == "startup"
    assert trade["breaker"]["state"] == "closed"
    one = client2.get(f"{ADMIN}/migrations/strategies", headers=AUTH)
    assert one.status_code == 200
    assert unjudged(one.json()) == unjudged(strategies)


def test_one_migration_is_listed_as_default(client: TestClient) -> None:
    [document] = client.get(f"{ADMIN}/migrations", headers=AUTH).json()["migrations"]
    assert set(document) == DOCUMENT
    assert (document["name"], document["match"]) == ("default", {"prefix": "/", "methods": None})
    one = client.get(f"{ADMIN}/migrations/default", headers=AUTH).json()
    assert unjudged(one) == unjudged(document)
    status = client.get(f"{ADMIN}/status", headers=AUTH).json()
    assert unjudged(status) == unjudged(document)  # /status is the one migration's document


def test_one_listed_migration_keeps_the_single_rollout_api(
    tmp_path, router: respx.MockRouter, monkeypatch
) -> None:
    path = tmp_path / "cutover.yaml"
    write_migrations(path, TRADE_ENGINE)
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    gateway = make_gateway(path, router)
    with TestClient(ByPort(gateway)) as client:
        status = client.get(f"{ADMIN}/status", headers=AUTH).json()
        assert (status["name"], status["weight"]) == ("trade-engine", 10)
        promoted = client.post(f"{ADMIN}/rollout/promote", headers=AUTH).json()
        assert (promoted["name"], promoted["weight"]) == ("trade-engine", 50)
        paused = client.put(f"{ADMIN}/split", json={"weight": 100}, headers=AUTH).json()
        assert (paused["phase"], paused["weight"]) == ("paused", 100)
        assert backends_for(client, "POST", "/api/v1/backtests/run") == {"new"}
    assert phases(gateway) == {"trade-engine": ("paused", 100)}


@pytest.mark.parametrize(
    ("action", "body", "phase", "weight"),
    [
        ("promote", None, "progressing", 50),
        ("pause", None, "paused", 10),
        ("rollback", {"reason": "bad numbers"}, "rolled_back", 0),
    ],
)
def test_an_action_moves_its_migration_only(
    client2: TestClient, gateway2: Gateway, action, body, phase, weight
) -> None:
    response = client2.post(f"{ADMIN}/migrations/trade-engine/{action}", json=body, headers=AUTH)
    assert response.status_code == 200
    document = response.json()
    assert (document["name"], document["phase"], document["weight"]) == (
        "trade-engine", phase, weight,
    )  # fmt: skip
    assert document["history"][-1]["kind"] == action
    if body is not None:
        assert document["reason"] == "bad numbers"
    assert phases(gateway2) == {
        "trade-engine": (phase, weight), "strategies": ("progressing", 25),
    }  # fmt: skip
    strategies = client2.get(f"{ADMIN}/migrations/strategies", headers=AUTH).json()
    assert [t["kind"] for t in strategies["history"]] == ["start"]


def test_resume_and_restart_act_on_their_migration_only(
    client2: TestClient, gateway2: Gateway
) -> None:
    def act(name: str, action: str) -> httpx.Response:
        return client2.post(f"{ADMIN}/migrations/{name}/{action}", headers=AUTH)

    assert act("strategies", "pause").status_code == 200
    assert act("trade-engine", "rollback").status_code == 200
    assert act("trade-engine", "restart").json()["phase"] == "progressing"
    assert phases(gateway2)["strategies"] == ("paused", 25)
    assert act("strategies", "resume").json()["phase"] == "progressing"
    assert phases(gateway2) == {
        "trade-engine": ("progressing", 10), "strategies": ("progressing", 25),
    }  # fmt: skip


def test_a_weight_routes_its_migrations_prefix_only(client2: TestClient, gateway2: Gateway) -> None:
    rolled = client2.post(f"{ADMIN}/migrations/trade-engine/rollback", headers=AUTH)
    assert rolled.status_code == 200
    response = client2.put(f"{ADMIN}/migrations/strategies/weight", json={"weight": 100},
                           headers=AUTH)  # fmt: skip
    assert response.status_code == 200
    assert (response.json()["phase"], response.json()["weight"]) == ("paused", 100)
    assert phases(gateway2) == {
        "trade-engine": ("rolled_back", 0), "strategies": ("paused", 100),
    }  # fmt: skip
    assert backends_for(client2, "GET", "/api/v1/strategies/7") == {"new"}
    assert backends_for(client2, "POST", "/api/v1/backtests/run") == {"legacy"}
    registry = gateway2.metrics.registry
    assert registry.get_sample_value("cutover_split_weight", {"migration": "strategies"}) == 100
    assert registry.get_sample_value("cutover_split_weight", {"migration": "trade-engine"}) == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/migrations/payments"),
        ("POST", "/migrations/payments/pause"),
        ("POST", "/migrations/payments/rollback"),
        ("PUT", "/migrations/payments/weight"),
    ],
)
def test_an_unknown_migration_is_a_404(client2: TestClient, gateway2: Gateway, method, path):
    body = {"weight": 50} if path.endswith("/weight") else None
    answer = problem(client2.request(method, f"{ADMIN}{path}", json=body, headers=AUTH), 404)
    assert answer["type"] == "urn:cutover:problem:not-found"
    assert "'payments'" in answer["detail"] and "trade-engine, strategies" in answer["detail"]
    assert phases(gateway2) == {
        "trade-engine": ("progressing", 10), "strategies": ("progressing", 25),
    }  # fmt: skip


def test_an_unknown_action_is_a_404(client2: TestClient) -> None:
    answer = problem(client2.post(f"{ADMIN}/migrations/strategies/dance", headers=AUTH), 404)
    assert "dance" in answer["detail"]


def test_a_phase_that_does_not_allow_the_action_is_a_409(
    client2: TestClient, gateway2: Gateway
) -> None:
    def act(name: str, action: str) -> httpx.Response:
        return client2.post(f"{ADMIN}/migrations/{name}/{action}", headers=AUTH)

    assert "only a paused" in problem(act("strategies", "resume"), 409)["detail"]
    assert "after a rollback" in problem(act("strategies", "restart"), 409)["detail"]
    assert act("trade-engine", "rollback").status_code == 200
    assert "already rolled back" in problem(act("trade-engine", "rollback"), 409)["detail"]
    assert "restart it first" in problem(act("trade-engine", "promote"), 409)["detail"]
    assert phases(gateway2) == {
        "trade-engine": ("rolled_back", 0), "strategies": ("progressing", 25),
    }  # fmt: skip


@pytest.mark.parametrize("body", [{"weight": 101}, {"weight": -1}, {"weight": "50"},
                                  {"weight": True}, {}, [1]])  # fmt: skip
def test_a_bad_weight_body_is_a_422(client2: TestClient, gateway2: Gateway, body) -> None:
    response = client2.put(f"{ADMIN}/migrations/strategies/weight", json=body, headers=AUTH)
    detail = problem(response, 422)["detail"]
    assert "weight" in detail or "object" in detail
    malformed = client2.put(f"{ADMIN}/migrations/strategies/weight", content=b"{nope",
                            headers=AUTH)  # fmt: skip
    assert "not valid JSON" in problem(malformed, 422)["detail"]
    assert phases(gateway2)["strategies"] == ("progressing", 25)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/status", None),
        ("POST", "/rollout/promote", None),
        ("POST", "/rollout/rollback", {"reason": "bad numbers"}),
        ("PUT", "/split", {"weight": 100}),
    ],
)
def test_the_single_rollout_api_names_the_migrations_when_there_are_several(
    client2: TestClient, gateway2: Gateway, method, path, body
) -> None:
    answer = problem(client2.request(method, f"{ADMIN}{path}", json=body, headers=AUTH), 409)
    assert answer["type"] == "urn:cutover:problem:several-migrations"
    assert answer["detail"] == SEVERAL
    assert phases(gateway2) == {
        "trade-engine": ("progressing", 10), "strategies": ("progressing", 25),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/migrations", None),
        ("GET", "/migrations/strategies", None),
        ("POST", "/migrations/strategies/pause", None),
        ("POST", "/migrations/strategies/resume", None),
        ("POST", "/migrations/strategies/promote", None),
        ("POST", "/migrations/strategies/rollback", {"reason": "bad numbers"}),
        ("POST", "/migrations/strategies/restart", None),
        ("PUT", "/migrations/strategies/weight", {"weight": 100}),
        ("GET", "/migrations/payments", None),  # an unknown name is no way past the token
    ],
)
def test_the_token_guards_every_migration_endpoint(
    client2: TestClient, gateway2: Gateway, method, path, body
) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = client2.request(method, f"{ADMIN}{path}", json=body, headers=headers)
        assert problem(response, 401)["status"] == 401
    assert phases(gateway2)["strategies"] == ("progressing", 25)
    failures = gateway2.metrics.registry.get_sample_value("cutover_admin_auth_failures_total")
    assert failures == 2
