"""The admin subcommands (cutover.cli.commands) against a mocked admin API: what each sends,
prints and exits with. The edge cases of their options are in test_main.py."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

import httpx
import pytest
import respx

from cutover.cli.commands import add_admin_commands
from cutover.cli.render import format_status
from tests.cli.answers import STATUS, problem

ADMIN_URL = "http://admin.test"
TOKEN = "s3cret"


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


def test_status_prints_the_summary(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/status").respond(json=STATUS)

    assert run("status") == 0

    assert capsys.readouterr().out == format_status(STATUS) + "\n"


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


def test_an_address_that_is_not_an_admin_api_exits_2(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/status").respond(404, text="Not Found")

    assert run("status") == 2

    assert capsys.readouterr().err.startswith(
        f"cutover: {ADMIN_URL} is not a Cutover admin API: it answered GET /status with 404 "
    )
