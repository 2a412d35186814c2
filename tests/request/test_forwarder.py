"""Fallback to legacy, the circuit breaker in the request path, limits and timeouts, over
respx-mocked backends."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.conftest import LEGACY_URL, NEW_URL
from tests.request import V3_URL, two_migrations


def registry(client):
    return client.app.metrics.registry


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.ReadError("reset"),
        httpx.Response(502),
        httpx.Response(503),
        httpx.Response(504),
    ],
)
def test_idempotent_requests_fall_back_to_legacy(upstreams, proxy, failure) -> None:
    new = upstreams.get(url__startswith=NEW_URL).mock(side_effect=[failure])
    legacy = upstreams.get(url__startswith=LEGACY_URL).respond(200, json={"from": "legacy"})
    client = proxy(split={"weight": 100}, breaker={"enabled": False})
    response = client.get("/api/items?x=1")
    assert response.status_code == 200
    assert response.json() == {"from": "legacy"}
    assert response.headers["x-cutover-backend"] == "legacy"
    assert response.headers["x-cutover-fallback"] == "new-failed"
    assert new.call_count == 1 and legacy.call_count == 1
    assert legacy.calls.last.request.url.raw_path == b"/api/items?x=1"
    # The failure still counts against new.
    counted = sum(
        registry(client).get_sample_value(
            "cutover_requests_total",
            {
                "migration": "default",
                "backend": "new",
                "route": "default",
                "code": code,
                "cohort": "weight",
            },
        )
        or 0
        for code in ("error", "5xx")
    )
    assert counted == 1


def test_put_body_is_replayed(upstreams, proxy) -> None:
    upstreams.put(url__startswith=NEW_URL).mock(side_effect=httpx.ConnectError("refused"))
    legacy = upstreams.put(url__startswith=LEGACY_URL).respond(204)
    client = proxy(split={"weight": 100})
    assert client.put("/doc/1", json={"a": 1}).status_code == 204
    assert json.loads(legacy.calls.last.request.content) == {"a": 1}


def test_unsafe_methods_do_not_fall_back(upstreams, proxy) -> None:
    upstreams.post(url__startswith=NEW_URL).mock(side_effect=httpx.ConnectError("refused"))
    legacy = upstreams.post(url__startswith=LEGACY_URL).respond(200)
    response = proxy(split={"weight": 100}).post("/orders", json={"a": 1})
    assert response.status_code == 502
    assert legacy.call_count == 0


def test_route_fallback_methods(upstreams, proxy) -> None:
    upstreams.post(url__startswith=NEW_URL).mock(side_effect=httpx.ConnectError("refused"))
    legacy = upstreams.post(url__startswith=LEGACY_URL).respond(200)
    client = proxy(
        split={"weight": 100},
        routes=[{"prefix": "/api/v1/backtests/", "fallback_methods": ["POST"]}],
    )
    assert client.post("/api/v1/backtests/b/execute", json={}).status_code == 200
    assert legacy.call_count == 1


PINNED = {"prefix": "/reports/", "backend": "new"}


def test_a_route_pinned_to_new_does_not_fall_back(upstreams, proxy) -> None:
    new = upstreams.get(url__startswith=NEW_URL).respond(503, json={"error": "busy"})
    legacy = upstreams.get(url__startswith=LEGACY_URL).respond(404)  # legacy has no such path
    response = proxy(routes=[PINNED]).get("/reports/1")
    assert (response.status_code, response.json()) == (503, {"error": "busy"})
    assert response.headers["x-cutover-backend"] == "new"
    assert "x-cutover-fallback" not in response.headers
    assert (new.call_count, legacy.call_count) == (1, 0)


def test_a_pinned_route_falls_back_only_for_the_methods_it_opts_in(upstreams, proxy) -> None:
    upstreams.route(url__startswith=NEW_URL).mock(side_effect=httpx.ConnectError("refused"))
    legacy = upstreams.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
    client = proxy(routes=[{**PINNED, "fallback_methods": ["get"]}])
    response = client.get("/reports/1")
    assert (response.status_code, response.text) == (200, "legacy")
    assert response.headers["x-cutover-fallback"] == "new-failed"
    assert client.delete("/reports/1").status_code == 502  # not listed: stays on new
    assert legacy.call_count == 1


def test_an_open_breaker_leaves_a_pinned_route_on_new(upstreams, proxy) -> None:
    new = upstreams.get(url__startswith=NEW_URL).mock(side_effect=httpx.ConnectError("down"))
    upstreams.get(url__startswith=LEGACY_URL).respond(200, text="legacy")
    routes = [PINNED, {"prefix": "/opted/", "backend": "new", "fallback_methods": ["GET"]}]
    client = proxy(
        split={"weight": 100}, routes=routes, breaker={"failures": 1, "cooldown": 60},
        fallback={"enabled": False},
    )  # fmt: skip
    assert client.get("/x").status_code == 502  # opens the breaker
    assert client.app.breakers["new"].state == "open"
    assert client.get("/x").text == "legacy"  # the weighted default route is diverted
    assert client.get("/opted/1").text == "legacy"  # so is a pinned route that opts in
    assert client.get("/reports/1").status_code == 502  # the pin holds
    assert new.call_count == 2


def test_large_bodies_are_not_replayed(upstreams, proxy) -> None:
    upstreams.put(url__startswith=NEW_URL).mock(side_effect=httpx.ConnectError("refused"))
    legacy = upstreams.put(url__startswith=LEGACY_URL).respond(200)
    client = proxy(split={"weight": 100}, fallback={"max_replay_body": 10})
    assert client.put("/doc", content=b"x" * 11).status_code == 502
    assert legacy.call_count == 0


def test_a_forced_backend_is_not_second_guessed(upstreams, proxy) -> None:
    upstreams.get(url__startswith=NEW_URL).mock(side_effect=httpx.ConnectError("refused"))
    legacy = upstreams.get(url__startswith=LEGACY_URL).respond(200)
    response = proxy(split={"weight": 0}).get("/x", headers={"X-Cutover-Backend": "new"})
    assert response.status_code == 502
    assert legacy.call_count == 0


def test_other_errors_from_new_are_passed_through(upstreams, proxy) -> None:
    upstreams.get(url__startswith=NEW_URL).respond(500, json={"error": "bug"})
    legacy = upstreams.get(url__startswith=LEGACY_URL).respond(200)
    response = proxy(split={"weight": 100}).get("/x")
    assert response.status_code == 500
    assert legacy.call_count == 0


def test_the_breaker_sends_new_traffic_to_legacy_while_open(upstreams, proxy) -> None:
    new = upstreams.get(url__startswith=NEW_URL).mock(side_effect=httpx.ConnectError("down"))
    upstreams.get(url__startswith=LEGACY_URL).respond(200)
    client = proxy(
        split={"weight": 100}, breaker={"failures": 3, "cooldown": 60},
        fallback={"enabled": False},
    )  # fmt: skip
    statuses = [client.get("/x").status_code for _ in range(10)]
    assert statuses == [502, 502, 502] + [200] * 7  # open after 3; the rest go to legacy
    assert new.call_count == 3
    reg = registry(client)
    opened = {"backend": "new", "state": "open"}
    assert reg.get_sample_value("cutover_breaker_state", opened) == 1
    assert reg.get_sample_value("cutover_breaker_transitions_total", opened) == 1


def test_the_breaker_closes_after_successful_probes(upstreams, proxy) -> None:
    new = upstreams.get(url__startswith=NEW_URL)
    new.side_effect = [httpx.ConnectError("down")] * 2 + [httpx.Response(200, text="new")] * 20
    upstreams.get(url__startswith=LEGACY_URL).respond(200, text="legacy")
    client = proxy(split={"weight": 100}, breaker={"failures": 2, "cooldown": 0.05, "probes": 2})
    assert [client.get("/x").text for _ in range(2)] == ["legacy", "legacy"]  # fell back
    breaker = client.app.breakers["new"]
    assert breaker.state == "open"
    client.portal.call(asyncio.sleep, 0.06)
    assert [client.get("/x").text for _ in range(3)] == ["new", "new", "new"]
    assert breaker.state == "closed"


def test_body_limit_by_content_length(upstreams, proxy) -> None:
    route = upstreams.post(url__startswith=LEGACY_URL).respond(200)
    client = proxy(limits={"max_request_body": 100})
    assert client.post("/x", content=b"x" * 100).status_code == 200
    response = client.post("/x", content=b"x" * 101)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert route.call_count == 1


def test_body_limit_on_a_chunked_stream(upstreams, proxy) -> None:
    upstreams.post(url__startswith=LEGACY_URL).respond(200)
    client = proxy(limits={"max_request_body": 100_000})
    chunks = (b"y" * 10_000 for _ in range(20))  # no Content-Length: chunked
    assert client.post("/x", content=chunks).status_code == 413
    small = (b"y" * 10_000 for _ in range(10))
    assert client.post("/x", content=small).status_code == 200


def test_too_many_in_flight_get_503_with_retry_after(upstreams, proxy) -> None:
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200)

    upstreams.get(url__startswith=LEGACY_URL).mock(side_effect=slow)
    client = proxy(limits={"max_concurrent_per_backend": 1, "queue_timeout": 0.05})
    held = client.portal.start_task_soon(
        lambda: client.app(
            {"type": "http", "method": "GET", "path": "/hold", "raw_path": b"/hold",
             "query_string": b"", "headers": [(b"host", b"testserver")], "scheme": "http",
             "http_version": "1.1",
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)},
            _receive_nothing, _discard,
        )
    )  # fmt: skip
    for _ in range(200):  # until the held request occupies the only slot
        if client.app.forwarder.slots["legacy"].locked():
            break
        client.portal.call(asyncio.sleep, 0.005)
    else:
        client.portal.call(release.set)
        pytest.fail("the held request never took the backend's slot")
    response = client.get("/x")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    client.portal.call(release.set)
    held.result(timeout=5)
    assert client.get("/x").status_code == 200


async def _receive_nothing() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: dict) -> None:
    pass


def test_total_timeout_gives_504(upstreams, proxy) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    upstreams.get(url__startswith=LEGACY_URL).mock(side_effect=slow)
    response = proxy(timeouts={"total": 0.1}).get("/x")
    assert response.status_code == 504
    assert "timeout" in response.json()["type"]


# Two migrations over three backends (tests.request.two_migrations): engine legacy -> new,
# strategies new -> v3. Each falls back to, and is diverted by its breaker to, its own from.

ENGINE_PATH, STRATEGIES_PATH = "/api/v1/backtests/7", "/api/v1/strategies/3"


def test_each_migration_falls_back_to_its_own_from(upstreams, proxy) -> None:
    upstreams.get(url__startswith=NEW_URL + "/api/v1/backtests").mock(
        side_effect=httpx.ConnectError("refused")
    )
    new = upstreams.get(url__startswith=NEW_URL).respond(200, text="new")
    upstreams.get(url__startswith=V3_URL).respond(503)
    legacy = upstreams.get(url__startswith=LEGACY_URL).respond(200, text="legacy")
    client = proxy(**two_migrations(engine=100, strategies=100), breaker={"enabled": False})
    engine = client.get(ENGINE_PATH)
    assert (engine.text, engine.headers["x-cutover-backend"]) == ("legacy", "legacy")
    assert engine.headers["x-cutover-fallback"] == "new-failed"
    strategies = client.get(STRATEGIES_PATH)
    assert (strategies.text, strategies.headers["x-cutover-backend"]) == ("new", "new")
    assert strategies.headers["x-cutover-fallback"] == "v3-failed"
    assert (legacy.call_count, new.call_count) == (1, 1)  # neither went to the other's from
    # A fallback answer comes from the migration's from: it carries that migration's
    # deprecation, not the other's.
    assert strategies.headers["deprecation"] == "@1798761600"
    assert engine.headers["deprecation"] == "@1796083200"
    failed = {"migration": "strategies", "backend": "v3", "route": "default", "code": "5xx",
              "cohort": "weight"}  # fmt: skip
    assert registry(client).get_sample_value("cutover_requests_total", failed) == 1


def test_a_breaker_per_backend_diverts_only_the_migration_moving_to_it(upstreams, proxy) -> None:
    upstreams.get(url__startswith=NEW_URL + "/api/v1/backtests").mock(
        side_effect=httpx.ConnectError("down")
    )
    new = upstreams.get(url__startswith=NEW_URL).respond(200, text="new")
    v3 = upstreams.get(url__startswith=V3_URL).respond(200, text="v3")
    upstreams.get(url__startswith=LEGACY_URL).respond(200, text="legacy")
    client = proxy(
        **two_migrations(engine=100, strategies=0),
        breaker={"failures": 2, "cooldown": 60}, fallback={"enabled": False},
    )  # fmt: skip
    breakers = client.app.breakers
    assert set(breakers) == {"new", "v3"}  # in front of each migration's to
    assert [client.get(ENGINE_PATH).status_code for _ in range(2)] == [502, 502]
    assert (breakers["new"].state, breakers["v3"].state) == ("open", "closed")
    diverted = client.get(ENGINE_PATH)
    assert (diverted.text, diverted.headers["x-cutover-backend"]) == ("legacy", "legacy")
    # new is strategies' from: the open breaker in front of new as engine's to does not
    # divert strategies' requests away from it.
    assert [client.get(STRATEGIES_PATH).text for _ in range(3)] == ["new"] * 3
    assert (new.call_count, v3.call_count) == (3, 0)
    reg = registry(client)
    for backend, state in (("new", "open"), ("v3", "closed")):
        labels = {"backend": backend, "state": state}
        assert reg.get_sample_value("cutover_breaker_state", labels) == 1, backend
    transitions = {"backend": "v3", "state": "open"}
    assert reg.get_sample_value("cutover_breaker_transitions_total", transitions) is None


def test_an_open_breaker_on_v3_sends_strategies_to_new(upstreams, proxy) -> None:
    v3 = upstreams.get(url__startswith=V3_URL).mock(side_effect=httpx.ConnectError("down"))
    upstreams.get(url__startswith=NEW_URL).respond(200, text="new")
    upstreams.get(url__startswith=LEGACY_URL).respond(200, text="legacy")
    client = proxy(
        **two_migrations(engine=100, strategies=100),
        breaker={"failures": 1, "cooldown": 60}, fallback={"enabled": False},
    )  # fmt: skip
    assert client.get(STRATEGIES_PATH).status_code == 502  # opens v3's breaker
    assert [client.get(STRATEGIES_PATH).text for _ in range(3)] == ["new"] * 3
    assert client.get(ENGINE_PATH).text == "new"  # engine's to is new: its breaker is closed
    assert v3.call_count == 1
    assert client.app.breakers["new"].state == "closed"


def test_the_mirror_goes_to_the_migrations_other_backend(upstreams, proxy, tmp_path) -> None:
    served = {
        name: upstreams.get(url__startswith=url).respond(200, json={"ok": True})
        for name, url in (("legacy", LEGACY_URL), ("new", NEW_URL), ("v3", V3_URL))
    }
    client = proxy(
        **two_migrations(engine=0, strategies=0, engine_shadow={"sample": 1.0},
                         strategies_shadow={"sample": 1.0}),
        shadow={"log_path": str(tmp_path / "shadow.jsonl")},
    )  # fmt: skip
    assert client.get(ENGINE_PATH).headers["x-cutover-backend"] == "legacy"
    assert client.get(STRATEGIES_PATH).headers["x-cutover-backend"] == "new"
    reg = registry(client)

    def matched(migration: str) -> float:
        labels = {"migration": migration, "route": "default", "result": "match"}
        return reg.get_sample_value("cutover_shadow_requests_total", labels) or 0

    deadline = time.monotonic() + 5
    while (matched("engine"), matched("strategies")) != (1, 1):
        assert time.monotonic() < deadline, "the mirrored requests were never compared"
        client.portal.call(asyncio.sleep, 0.01)
    # engine's request (served by legacy) was mirrored to new, strategies' (served by new)
    # to v3: each to its own migration's other backend, no more.
    calls = {name: sorted(c.request.url.path for c in r.calls) for name, r in served.items()}
    assert calls == {
        "legacy": [ENGINE_PATH],
        "new": sorted([ENGINE_PATH, STRATEGIES_PATH]),
        "v3": [STRATEGIES_PATH],
    }
