from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from cutover.cli.admin_client import AdminClient, AdminError, add_admin_commands

ADMIN_URL = "http://admin.test"
TOKEN = "s3cret"

STATUS: dict[str, Any] = {
    "phase": "progressing",
    "weight": 50.0,
    "stage": 1,
    "stages": [
        {"weight": 10.0, "hold": 300.0},
        {"weight": 50.0, "hold": 600.0},
        {"weight": 100.0, "hold": 300.0},
    ],
    "reason": "stage 1 healthy for 5m",
    "failure": {
        "check": "latency",
        "value": 0.91,
        "threshold": 0.5,
        "detail": "p95 910ms over 500ms",
    },
    "healthy_for": 100.0,
    "next_promotion_in": 200.0,
    "checks": {
        "error_rate": {"result": "pass", "value": 0.01, "threshold": 0.05, "detail": "1 of 100"},
        "latency": {"result": "fail", "value": 0.91, "threshold": 0.5, "detail": "p95 910ms"},
        "memory": {"result": "nodata", "value": None, "threshold": 536870912, "detail": ""},
    },
    "history": [
        {
            "at": f"2026-11-21T23:5{i}:00Z",
            "from_phase": "progressing",
            "to_phase": "progressing",
            "from_weight": float(i),
            "to_weight": float(i + 1),
            "reason": f"step {i}",
            "actor": "guard",
        }
        for i in range(7)
    ],
}


def problem(status: int, detail: str) -> httpx.Response:
    body = {"type": "urn:cutover:problem:x", "title": "Nope", "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cutover")
    add_admin_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    monkeypatch.setenv("CUTOVER_ADMIN_URL", ADMIN_URL)
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    with respx.mock(base_url=ADMIN_URL, assert_all_called=False) as router:
        yield router


def test_status_summary(admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]) -> None:
    admin.get("/status").respond(json=STATUS)

    assert run("status") == 0

    out = capsys.readouterr().out
    assert "phase     progressing" in out
    assert "weight    50% to new" in out
    assert "stage     2/3 (50%), hold 10m" in out
    assert "reason    stage 1 healthy for 5m" in out
    assert "failure   latency 0.91 vs threshold 0.5 (p95 910ms over 500ms)" in out
    assert "next      promotion in 3m 20s (checks passing for 1m 40s)" in out
    assert "error_rate  pass    0.01 (threshold 0.05)  1 of 100" in out
    assert "latency     fail    0.91 (threshold 0.5)  p95 910ms" in out
    assert "memory      nodata  - (threshold 536870912)" in out
    assert "history (last 5 of 7)" in out
    assert "2026-11-21T23:51:00Z" not in out
    assert "2026-11-21T23:56:00Z  guard     progressing 6% -> progressing 7%  step 6" in out


def test_status_without_rollout(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = {
        **STATUS,
        "phase": "manual",
        "stage": None,
        "stages": [],
        "reason": None,
        "failure": None,
        "healthy_for": None,
        "next_promotion_in": None,
        "history": [],
    }
    admin.get("/status").respond(json=quiet)

    assert run("status") == 0

    out = capsys.readouterr().out
    assert "stage     none (no rollout configured)" in out
    assert "reason    -" in out
    assert "failure" not in out
    assert "next      no automatic promotion pending" in out
    assert "history   none" in out


def test_status_json(admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]) -> None:
    admin.get("/status").respond(json=STATUS)

    assert run("status", "--json") == 0

    out = capsys.readouterr().out
    assert json.loads(out) == STATUS
    assert out.startswith('{\n  "phase"')


@pytest.mark.parametrize("action", ["pause", "resume", "promote", "restart", "rollback"])
def test_actions_post_with_token(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    after = {**STATUS, "phase": "paused", "weight": 25.0, "reason": f"{action} by operator"}
    route = admin.post(f"/rollout/{action}").respond(json=after)

    assert run(action) == 0

    assert route.call_count == 1
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert capsys.readouterr().out == f"paused, weight 25% to new\nreason: {action} by operator\n"


def test_rollback_sends_reason(admin: respx.MockRouter) -> None:
    route = admin.post("/rollout/rollback").respond(json=STATUS)

    assert run("rollback", "--reason", "pager went off") == 0

    assert json.loads(route.calls.last.request.content) == {"reason": "pager went off"}


def test_set_weight(admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]) -> None:
    route = admin.put("/split").respond(json={**STATUS, "phase": "manual", "weight": 25.0})

    assert run("set-weight", "25") == 0

    request = route.calls.last.request
    assert json.loads(request.content) == {"weight": 25.0}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert capsys.readouterr().out.startswith("manual, weight 25% to new\n")


@pytest.mark.parametrize("weight", ["150", "-1", "lots", "nan"])
def test_set_weight_rejects_bad_weight_before_any_request(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str], weight: str
) -> None:
    route = admin.put("/split").respond(json=STATUS)

    with pytest.raises(SystemExit) as exit_info:
        run("set-weight", "--", weight)

    assert exit_info.value.code == 2
    assert "weight must be a number from 0 to 100" in capsys.readouterr().err
    assert not route.called


def test_url_and_token_options_override_env(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = admin.route(host="other.test", path="/rollout/pause").respond(json=STATUS)

    assert run("pause", "--admin-url", "http://other.test", "--token", "t2") == 0

    assert route.calls.last.request.headers["authorization"] == "Bearer t2"


def test_unauthorized_hints_at_token(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/status").mock(return_value=problem(401, "bad token"))

    assert run("status") == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "cutover: the admin API refused the token: set CUTOVER_ADMIN_TOKEN or --token\n"
    )


def test_conflict_shows_detail(admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]) -> None:
    admin.post("/rollout/resume").mock(return_value=problem(409, "the rollout is not paused"))

    assert run("resume") == 1

    assert capsys.readouterr().err == "cutover: the rollout is not paused\n"


def test_connection_refused(admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]) -> None:
    admin.get("/status").mock(side_effect=httpx.ConnectError("connection refused"))

    assert run("status") == 1

    err = capsys.readouterr().err
    assert err.startswith(f"cutover: cannot reach the admin API at {ADMIN_URL}: ")
    assert "connection refused" in err


def client_answering(response: httpx.Response | Exception) -> AdminClient:
    router = respx.MockRouter(base_url=ADMIN_URL, assert_all_called=False)
    router.route().mock(side_effect=[response])
    return AdminClient(ADMIN_URL, TOKEN, transport=httpx.MockTransport(router.handler))


@pytest.mark.parametrize(
    ("response", "message", "status"),
    [
        (httpx.ReadTimeout("slow"), "did not answer in time", None),
        (problem(422, "weight must be between 0 and 100"), "weight must be between", 422),
        (httpx.Response(500, text="oops"), "answered 500 Internal Server Error to PUT /split", 500),
        (httpx.Response(200, text="<html>"), "something other than a JSON object", 200),
        (httpx.Response(200, json=[1, 2]), "something other than a JSON object", 200),
    ],
)
def test_client_errors(
    response: httpx.Response | Exception, message: str, status: int | None
) -> None:
    with client_answering(response) as client, pytest.raises(AdminError) as error:
        client.set_weight(50)

    assert message in str(error.value)
    assert error.value.status == status


def test_client_without_token_sends_no_authorization() -> None:
    router = respx.MockRouter(base_url=ADMIN_URL, assert_all_called=False)
    route = router.get("/status").respond(json=STATUS)

    with AdminClient(ADMIN_URL, None, transport=httpx.MockTransport(router.handler)) as client:
        assert client.status() == STATUS

    assert "authorization" not in route.calls.last.request.headers
