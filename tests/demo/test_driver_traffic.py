"""cutover_demo.new_backend.driver_traffic: the requests it sends, what it reads of
GET /migrations, and the fault it puts into the new backend under one migration's prefix."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
import respx

from cutover_demo.new_backend.driver_signals import StopSignals
from cutover_demo.new_backend.driver_traffic import (
    CLIENT_APPS,
    FAULTS,
    STRATEGIES,
    SYMBOLS,
    FaultPlan,
    Traffic,
    drive,
    execute_request,
)
from tests.demo.migration_docs import doc, two

pytestmark = pytest.mark.anyio

PROXY = "http://proxy.test"
ADMIN = "http://admin.test"
NEW = "http://new.test"


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


def serve(router: respx.MockRouter, backend: str) -> None:
    answer = httpx.Response(200, json={}, headers={"X-Cutover-Backend": backend})
    router.post(url__regex=rf"{PROXY}/api/v1/backtests/.*").mock(return_value=answer)
    router.get(f"{PROXY}/api/v1/strategies").mock(return_value=answer)


def test_an_execute_request() -> None:
    path, body = execute_request()
    assert re.fullmatch(r"/api/v1/backtests/bt-\d+/execute", path)
    assert body["strategy"] in STRATEGIES and body["symbol"] in SYMBOLS


async def test_both_endpoints_in_turn_sticky_and_counted_by_migration(
    router: respx.MockRouter,
) -> None:
    serve(router, "new")
    traffic = Traffic(PROXY, ADMIN, "t0ken")
    traffic.migrations = two()
    for _ in range(4):
        await traffic.send_one()
    await traffic.aclose()
    sent = [call.request for call in router.calls]
    assert [r.method for r in sent] == ["POST", "GET", "POST", "GET"]
    assert all(r.headers["x-user-id"].startswith("user-") for r in sent)
    # One user, one client application: the usage report names the applications.
    users = {r.headers["x-user-id"]: r.headers["x-client-id"] for r in sent}
    assert all(app == CLIENT_APPS[int(user[5:]) % 4] for user, app in users.items())
    assert traffic.total == {"new": 4}
    lines = traffic.progress.lines(0.0, two())
    assert all("new=   2" in line for line in lines), lines


async def test_a_failed_answer_counts_as_failed(router: respx.MockRouter) -> None:
    router.post(url__regex=rf"{PROXY}/.*").mock(return_value=httpx.Response(502))
    router.get(url__regex=rf"{PROXY}/.*").mock(side_effect=httpx.ConnectError("refused"))
    traffic = Traffic(PROXY, ADMIN, "t0ken")
    await traffic.send_one()
    await traffic.send_one()
    await traffic.aclose()
    assert traffic.total == {"failed": 2}


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(409, json={"type": "urn:cutover:problem:conflict"}),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"phase": "progressing"}),  # /status, not /migrations
    ],
)
async def test_an_unreadable_migrations_answer_is_none(
    router: respx.MockRouter, answer: httpx.Response
) -> None:
    router.get(f"{ADMIN}/migrations").mock(return_value=answer)
    traffic = Traffic(PROXY, ADMIN, "t0ken")
    assert await traffic.poll() is None
    await traffic.aclose()


async def test_the_migrations_are_read_with_the_admin_token(router: respx.MockRouter) -> None:
    route = router.get(f"{ADMIN}/migrations").mock(
        return_value=httpx.Response(200, json={"migrations": two()})
    )
    traffic = Traffic(PROXY, ADMIN, "t0ken")
    assert await traffic.poll() == two()
    await traffic.aclose()
    assert route.calls.last.request.headers["authorization"] == "Bearer t0ken"
    assert traffic.migrations == two()


def test_the_plan_names_the_target_its_prefix_and_weight() -> None:
    plan = FaultPlan("error-rate", NEW, "n3w")
    assert plan.plan_line(two()) == (
        "demo: once trade-engine reaches 50%, the error-rate fault goes into new for the "
        "requests under /api/v1/backtests/ (trade-engine's prefix) only"
    )
    assert plan.body() == {**FAULTS["error-rate"], "path_prefix": "/api/v1/backtests/"}
    memory = FaultPlan("memory", NEW, "n3w")
    assert memory.plan_line(two()).endswith(
        "(a leak grows all of new: strategies will roll back too)"
    )
    assert "not injected" in FaultPlan("latency", NEW, "n3w").plan_line([])


async def test_drive_injects_the_fault_at_the_second_stage_and_ends_once_settled(
    router: respx.MockRouter,
) -> None:
    serve(router, "legacy")
    ramp = two()
    at_50 = two()
    at_50[0].update(weight=50.0, stage=1)
    ended = two()
    ended[0].update(phase="rolled_back", weight=0.0, stage=None)
    ended[1].update(phase="promoted", weight=100.0, stage=1)
    router.get(f"{ADMIN}/migrations").mock(
        side_effect=[httpx.Response(200, json={"migrations": m}) for m in (ramp, at_50, ended)]
    )
    faults = router.put(f"{NEW}/admin/faults").mock(return_value=httpx.Response(200, json={}))
    plan = FaultPlan("error-rate", NEW, "n3w")
    traffic = Traffic(PROXY, ADMIN, "t0ken")

    done = await drive(traffic, rate=1000, duration=30, fault=plan, stop=StopSignals(), every=0.01)

    assert done
    polls_before = [c.request.method for c in router.calls].index("PUT")
    assert sum(c.request.url.path == "/migrations" for c in router.calls[:polls_before]) == 2
    [put] = faults.calls
    assert json.loads(put.request.content) == {
        "error_rate": 0.3,
        "path_prefix": "/api/v1/backtests/",
    }
    assert put.request.headers["authorization"] == "Bearer n3w"
    assert traffic.total["legacy"] > 0


async def test_drive_runs_on_while_a_migration_is_unsettled(router: respx.MockRouter) -> None:
    serve(router, "new")
    manual = doc("reports", "/", phase="manual", stage=None, stages=())
    router.get(f"{ADMIN}/migrations").mock(
        return_value=httpx.Response(200, json={"migrations": [manual]})
    )
    traffic = Traffic(PROXY, ADMIN, "t0ken")
    done = await drive(traffic, rate=1000, duration=0.2, fault=None, stop=StopSignals(), every=0.01)
    assert not done
    assert traffic.total["new"] > 0


async def test_a_fault_the_new_backend_refuses_is_tried_again(
    router: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    at_50 = two()
    at_50[0].update(weight=50.0, stage=1)
    faults = router.put(f"{NEW}/admin/faults").mock(
        side_effect=[httpx.Response(401), httpx.Response(200, json={})]
    )
    plan = FaultPlan("latency", NEW, "n3w")
    await plan.follow(at_50)
    assert not plan.injected
    await plan.follow(at_50)
    await plan.follow(at_50)  # injected once: not again
    assert plan.injected and faults.call_count == 2
    out = capsys.readouterr().out
    assert out.count("demo: once trade-engine") == 1
    assert "could not inject the fault (trying again)" in out
