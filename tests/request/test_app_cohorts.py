"""Cohorts through the whole app over respx-mocked backends: the backend a cohort picks, the
query forwarded as the client sent it, the ``cohort`` label, the rollback rule via the
fan-out."""

from __future__ import annotations

import respx

from cutover.ops.fanout import TransitionFanout
from cutover.rollout.state import RolloutState
from cutover.vocabulary import Phase
from tests.conftest import LEGACY_URL, NEW_URL

ENGINE = {
    "name": "trade-engine", "match": {"prefix": "/api/"}, "from": "legacy", "to": "new",
    "cohorts": [
        {"query": {"use_new_executor": "true"}, "backend": "new", "name": "executor"},
        {"query": {"version": "2"}, "backend": "new"},
        {"header": {"X-Beta-Tester": "yes"}, "backend": "new", "name": "beta"},
        {"cookie": {"canary": "1"}, "backend": "new", "survive_rollback": True},
    ],
}  # fmt: skip


def both(upstreams: respx.MockRouter) -> tuple[respx.Route, respx.Route]:
    legacy = upstreams.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
    new = upstreams.route(url__startswith=NEW_URL).respond(200, text="new")
    return legacy, new


def test_a_query_cohort_routes_and_the_query_is_forwarded_byte_for_byte(upstreams, proxy) -> None:
    legacy, new = both(upstreams)
    client = proxy(migrations=[ENGINE])
    # Encoded name and value, a plus, a repeated parameter, an empty one: sent as they are.
    raw = b"/api/run?use%5Fnew%5Fexecutor=%74rue&q=a+b%2Bc&v=1&v=2&flag&z=%7e"
    response = client.get(raw.decode())
    assert response.headers["x-cutover-backend"] == "new"
    assert new.calls.last.request.url.raw_path == raw
    response = client.get("/api/run?version=1&version=2")
    assert response.headers["x-cutover-backend"] == "new"
    assert new.calls.last.request.url.raw_path == b"/api/run?version=1&version=2"
    response = client.get("/api/run?version=3&use_new_executor=1")
    assert response.headers["x-cutover-backend"] == "legacy"
    assert legacy.calls.last.request.url.raw_path == b"/api/run?version=3&use_new_executor=1"


def test_header_and_cookie_cohorts(upstreams, proxy) -> None:
    both(upstreams)
    client = proxy(migrations=[ENGINE])
    assert client.get("/api/x", headers={"X-Beta-Tester": "yes"}).text == "new"
    assert client.get("/api/x", headers={"X-Beta-Tester": "no"}).text == "legacy"
    assert client.get("/api/x", headers={"Cookie": "a=b; canary=1"}).text == "new"
    assert client.get("/api/x").text == "legacy"


def test_requests_are_counted_by_the_cohort_that_sent_them(upstreams, proxy) -> None:
    both(upstreams)
    client = proxy(migrations=[ENGINE])
    client.get("/api/x?use_new_executor=true")
    client.get("/api/x?use_new_executor=true")
    client.get("/api/x?version=2")
    client.get("/api/x", headers={"X-Beta-Tester": "yes"})
    client.get("/api/x")
    client.get("/api/x", headers={"X-Cutover-Backend": "new", "X-Beta-Tester": "yes"})
    registry = client.app.metrics.registry

    def counted(backend: str, cohort: str) -> float | None:
        labels = {"migration": "trade-engine", "backend": backend, "route": "default",
                  "code": "2xx", "cohort": cohort}  # fmt: skip
        return registry.get_sample_value("cutover_requests_total", labels)

    assert counted("new", "executor") == 2
    assert counted("new", "1") == 1  # unnamed: its index
    assert counted("new", "beta") == 1
    assert counted("legacy", "weight") == 1
    assert counted("new", "weight") == 1  # the override is not a cohort's decision


def test_a_rollback_reaching_the_splitter_moves_cohorts_to_from(upstreams, proxy) -> None:
    both(upstreams)
    client = proxy(migrations=[ENGINE])
    fanout = TransitionFanout(client.app, client.app.metrics)
    beta, canary = {"X-Beta-Tester": "yes"}, {"Cookie": "canary=1"}
    fanout.on_sync("trade-engine", RolloutState(Phase.ROLLED_BACK, 0.0))
    assert client.get("/api/x", headers=beta).text == "legacy"
    assert client.get("/api/x", headers=canary).text == "new"  # survive_rollback
    assert client.get("/api/x", headers={**beta, "X-Cutover-Backend": "new"}).text == "new"
    fanout.on_sync("trade-engine", RolloutState(Phase.PROGRESSING, 10.0))
    assert client.get("/api/x", headers=beta).text == "new"
