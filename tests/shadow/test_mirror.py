"""Dual run over respx-mocked backends: the client sees the primary alone; the comparison
happens on the side, bounded, and lands in metrics and the mismatch log."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from cutover.config import parse_settings
from cutover.ops.assembly import create_app
from cutover.ops.guard_runner import build_judges
from cutover.ops.server import server_config
from cutover.request.metrics import Metrics
from cutover.rollout.guard import Guard
from cutover.rollout.registry import Migrations
from cutover.rollout.sources import Observation, Subject
from cutover.rollout.state import StateStore
from cutover.vocabulary import CheckResult
from tests.conftest import LEGACY_URL, NEW_URL, make_settings
from tests.processes import wait_until
from tests.servers import serve, serve_config

ROUTE = "/api/"


def shadow_config(tmp_path: Path, **route_shadow) -> dict:
    return {
        "split": {"weight": 0},
        "routes": [{"prefix": ROUTE, "shadow": {"sample": 1.0, **route_shadow}}],
        "shadow": {"log_path": str(tmp_path / "shadow.jsonl"), "max_in_flight": 4},
    }


def results(client) -> dict[str, float]:
    registry = client.app.metrics.registry
    return {
        result: registry.get_sample_value(
            "cutover_shadow_requests_total",
            {"migration": "default", "route": ROUTE, "result": result},
        )
        or 0
        for result in ("match", "mismatch", "error", "dropped")
    }


def wait_for(client, predicate, what: str) -> None:
    """Shadow comparisons finish on the app's loop after the response: poll, bounded."""
    for _ in range(500):
        if predicate():
            return
        client.portal.call(asyncio.sleep, 0.01)
    raise AssertionError(f"timed out waiting for {what}")


def log_lines(tmp_path: Path) -> list[dict]:
    """The log's complete lines so far (its writer thread may be writing the next one)."""
    path = tmp_path / "shadow.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def test_matching_answers_count_as_matches(upstreams, proxy, tmp_path) -> None:
    upstreams.get(LEGACY_URL + "/api/x").respond(json={"value": 100.0, "engine": "old"})
    shadow = upstreams.get(NEW_URL + "/api/x").respond(json={"value": 100.4, "engine": "new"})
    client = proxy(**shadow_config(tmp_path, ignore=["$.engine"]))
    response = client.get("/api/x")
    assert response.json() == {"value": 100.0, "engine": "old"}
    wait_for(client, lambda: results(client)["match"] == 1, "a match")
    sent = shadow.calls.last.request
    assert sent.headers["x-cutover-shadow"] == "true"
    assert sent.headers["x-forwarded-for"] == "testclient"
    assert log_lines(tmp_path) == []


def test_mismatches_are_counted_and_logged_without_credentials(upstreams, proxy, tmp_path) -> None:
    upstreams.get(url__startswith=LEGACY_URL).respond(json={"sharpe": 1.0, "n": 3})
    upstreams.get(url__startswith=NEW_URL).respond(json={"sharpe": 1.05, "n": 3})
    client = proxy(**shadow_config(tmp_path))
    response = client.get(
        "/api/run?token=query-secret-7",
        headers={"Authorization": "Bearer hunter2", "Cookie": "session=cookie-secret-9"},
    )
    assert response.json() == {"sharpe": 1.0, "n": 3}
    wait_for(client, lambda: results(client)["mismatch"] == 1, "a mismatch")
    wait_for(client, lambda: log_lines(tmp_path), "the mismatch's log line")
    [line] = log_lines(tmp_path)
    assert (line["method"], line["path"], line["route"]) == ("GET", "/api/run", ROUTE)
    assert line["migration"] == "default"
    assert line["diffs"] == [
        {"path": "$.sharpe", "primary": 1.0, "shadow": 1.05, "reason": "value"}
    ]
    text = json.dumps(line)
    assert "hunter2" not in text and "cookie-secret-9" not in text and "query-secret-7" not in text
    assert line["primary"] == {"backend": "legacy", "status": 200}
    assert line["shadow"] == {"backend": "new", "status": 200}


def test_a_status_difference_is_a_mismatch(upstreams, proxy, tmp_path) -> None:
    upstreams.get(url__startswith=LEGACY_URL).respond(200, json={})
    upstreams.get(url__startswith=NEW_URL).respond(500, json={})
    client = proxy(**shadow_config(tmp_path))
    assert client.get("/api/x").status_code == 200
    wait_for(client, lambda: results(client)["mismatch"] == 1, "a mismatch")


def test_a_failing_shadow_is_never_seen_by_the_client(upstreams, proxy, tmp_path) -> None:
    upstreams.get(url__startswith=LEGACY_URL).respond(json={"ok": True})
    upstreams.get(url__startswith=NEW_URL).mock(side_effect=httpx.ConnectError("refused"))
    client = proxy(**shadow_config(tmp_path))
    response = client.get("/api/x")
    assert (response.status_code, response.json()) == (200, {"ok": True})
    wait_for(client, lambda: results(client)["error"] == 1, "an error")


def test_a_slow_shadow_does_not_delay_the_client(upstreams, proxy, tmp_path) -> None:
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json={"ok": True})

    upstreams.get(url__startswith=LEGACY_URL).respond(json={"ok": True})
    upstreams.get(url__startswith=NEW_URL).mock(side_effect=slow)
    client = proxy(**shadow_config(tmp_path))
    # If the proxy waited for the shadow, this request would never return: the shadow is
    # released only after the client has its answer.
    response = client.get("/api/x")
    assert response.json() == {"ok": True}
    assert results(client)["match"] == 0
    client.portal.call(release.set)
    wait_for(client, lambda: results(client)["match"] == 1, "the released comparison")


def test_excess_mirrors_are_dropped_and_counted(upstreams, proxy, tmp_path) -> None:
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json={})

    upstreams.get(url__startswith=LEGACY_URL).respond(json={})
    shadow = upstreams.get(url__startswith=NEW_URL).mock(side_effect=slow)
    config = shadow_config(tmp_path)
    config["shadow"]["max_in_flight"] = 2
    client = proxy(**config)
    for _ in range(5):
        assert client.get("/api/x").status_code == 200
    assert results(client)["dropped"] == 3
    client.portal.call(release.set)
    wait_for(client, lambda: results(client)["match"] == 2, "the two comparisons")
    assert shadow.call_count == 2


def test_only_listed_methods_are_mirrored(upstreams, proxy, tmp_path) -> None:
    upstreams.post(url__startswith=LEGACY_URL).respond(json={})
    shadow = upstreams.post(url__startswith=NEW_URL).respond(json={})
    client = proxy(**shadow_config(tmp_path))  # default methods: GET, HEAD
    client.post("/api/x", json={"a": 1})
    assert shadow.call_count == 0
    assert sum(results(client).values()) == 0

    client = proxy(**shadow_config(tmp_path, methods=["POST"]))
    client.post("/api/x", json={"a": 1})
    wait_for(client, lambda: results(client)["match"] == 1, "a POST comparison")
    assert json.loads(shadow.calls.last.request.content) == {"a": 1}


def test_bodies_over_the_cap_are_not_mirrored(upstreams, proxy, tmp_path) -> None:
    upstreams.post(url__startswith=LEGACY_URL).respond(json={})
    shadow = upstreams.post(url__startswith=NEW_URL).respond(json={})
    config = shadow_config(tmp_path, methods=["POST"])
    config["shadow"]["max_body"] = 16
    client = proxy(**config)
    assert client.post("/api/x", content=b"x" * 17).status_code == 200
    assert shadow.call_count == 0
    assert results(client)["dropped"] == 1


def test_sampling(upstreams, proxy, tmp_path) -> None:
    upstreams.get(url__startswith=LEGACY_URL).respond(json={})
    shadow = upstreams.get(url__startswith=NEW_URL).respond(json={})
    client = proxy(**shadow_config(tmp_path, sample=0.25))
    for _ in range(400):
        client.get("/api/x")
    wait_for(client, lambda: sum(results(client).values()) == shadow.call_count, "comparisons")
    assert 50 <= shadow.call_count <= 150  # 100 expected; more than 5 sigma either side


def test_routes_without_shadow_are_untouched(upstreams, proxy, tmp_path) -> None:
    upstreams.get(url__startswith=LEGACY_URL).respond(json={})
    shadow = upstreams.get(url__startswith=NEW_URL).respond(json={})
    client = proxy(**shadow_config(tmp_path))
    client.get("/other")
    assert shadow.call_count == 0


def test_a_migrations_shadow_mirrors_its_requests_counted_as_its_own(
    upstreams, proxy, tmp_path
) -> None:
    upstreams.get(url__startswith=LEGACY_URL).respond(json={"n": 1})
    shadow = upstreams.get(url__startswith=NEW_URL).respond(json={"n": 2})
    client = proxy(
        migrations=[
            {"name": "trade-engine", "match": {"prefix": "/api/v1/backtests"}, "from": "legacy",
             "to": "new", "shadow": {"sample": 1.0}},
            {"name": "strategies", "match": {"prefix": "/api/v1/strategies"}, "from": "legacy",
             "to": "new"},
        ],
        shadow={"log_path": str(tmp_path / "shadow.jsonl")},
    )  # fmt: skip
    assert client.get("/api/v1/strategies/1").json() == {"n": 1}
    assert client.get("/api/v1/backtests/7").json() == {"n": 1}
    registry = client.app.metrics.registry

    def mismatches(migration: str) -> float:
        labels = {"migration": migration, "route": "default", "result": "mismatch"}
        return registry.get_sample_value("cutover_shadow_requests_total", labels) or 0

    wait_for(client, lambda: mismatches("trade-engine") == 1, "trade-engine's mismatch")
    assert [call.request.url.path for call in shadow.calls] == ["/api/v1/backtests/7"]
    assert mismatches("strategies") == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("rollback", [False, True])
async def test_the_shadow_check_gates_promotion(tmp_path, anyio_backend, rollback) -> None:
    settings = make_settings(
        rollout={"stages": [10, 100], "hold": 1},
        routes=[{"prefix": "/", "shadow": {}}],
        shadow={"log_path": str(tmp_path / "s.jsonl"), "rollback_on_mismatch": rollback},
        state={"path": str(tmp_path / "state.json")},
    )
    clock_now = [0.0]

    def clock() -> float:
        return clock_now[0]

    store = StateStore(settings.state.path)
    migrations = Migrations.restore(settings, store, clock=clock, monotonic=clock)
    rollout = migrations.get("default")

    skewed = Observation(new_requests=500, new_errors=0, legacy_requests=500, new_p95=0.01,
                         legacy_p95=0.01, shadow_comparisons=200, shadow_mismatches=20)  # fmt: skip

    async def observe(now: float, subjects: Sequence[Subject]) -> dict[str, Observation]:
        return {subject.name: copy.deepcopy(skewed) for subject in subjects}

    judges = build_judges(settings, migrations)
    guard = Guard(settings.guard, migrations, judges, Metrics(), observe, monotonic=clock)
    for _ in range(10):
        verdicts = (await guard.tick())["default"]
        clock_now[0] += 5
    shadow = next(v for v in verdicts if v.check == "shadow")
    assert shadow.value == pytest.approx(0.1)
    if rollback:
        assert rollout.phase == "rolled_back"
        assert rollout.state.failure["check"] == "shadow"
    else:
        assert shadow.result is CheckResult.FAIL
        assert (rollout.phase, rollout.weight) == ("progressing", 10)  # blocked, not undone


# --------------------------------------------------------------------------- real sockets


def leaving_client_backends() -> tuple[Any, Any, threading.Event]:
    """legacy (the primary): ``/api/stream`` sends a chunk every 20 ms until its client
    leaves; ``/api/hold`` answers nothing until then. new (the shadow) holds every request
    until the proxy hangs up on it, and sets the event then."""
    shadow_gone = threading.Event()

    async def disconnected(receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def legacy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/api/hold":
            await disconnected(receive)
            return
        gone = asyncio.ensure_future(disconnected(receive))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while not gone.done():
            await send({"type": "http.response.body", "body": b"." * 512, "more_body": True})
            await asyncio.sleep(0.02)

    async def new(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await disconnected(receive)
        shadow_gone.set()

    return legacy, new, shadow_gone


@pytest.mark.parametrize("leaves", ["mid-body", "before-the-answer"])
def test_a_mirror_whose_client_leaves_is_dropped_at_once(tmp_path, leaves: str) -> None:
    legacy_app, new_app, shadow_gone = leaving_client_backends()
    with serve(legacy_app) as legacy, serve(new_app) as new:
        settings = parse_settings(
            {
                "backends": {"legacy": {"url": legacy}, "new": {"url": new}},
                **shadow_config(tmp_path),
                # Long enough that only the client leaving can end the mirror in time.
                "shadow": {"log_path": str(tmp_path / "s.jsonl"), "timeout": 60},
            }
        )
        app = create_app(settings)
        with serve_config(server_config(app, log_level="warning")) as url:
            with httpx.Client(base_url=url, timeout=httpx.Timeout(5.0, read=1.0)) as client:
                if leaves == "mid-body":
                    with client.stream("GET", "/api/stream") as response:
                        assert response.status_code == 200
                        next(response.iter_raw())
                else:
                    with pytest.raises(httpx.ReadTimeout):
                        client.get("/api/hold")
            shadower = app.shadower
            assert shadower is not None

            def settled() -> bool:
                return shadower.in_flight == 0 and shadower.totals["dropped"] == 1

            wait_until(settled, 10, "the mirror to be dropped")
            assert shadow_gone.wait(5), "the shadow call was not stopped"
            assert dict(shadower.totals) == {"match": 0, "mismatch": 0, "error": 0, "dropped": 1}
            registry = app.metrics.registry
            dropped = {"migration": "default", "route": ROUTE, "result": "dropped"}
            assert registry.get_sample_value("cutover_shadow_requests_total", dropped) == 1
