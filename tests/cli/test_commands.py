"""The admin subcommands (cutover.cli.commands) against a mocked admin API: what each sends,
prints and exits with, with one migration configured and with several. The edge cases of their
options are in test_main.py."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

import httpx
import pytest
import respx

from cutover.cli.commands import EXIT_FAILED, EXIT_USAGE, add_admin_commands
from cutover.cli.render import format_migration, format_status
from tests.cli.answers import (
    FLEET,
    MIGRATION,
    ONE,
    SEVERAL,
    STRATEGIES,
    UNREACHABLE_DETAIL,
    fleet_unavailable,
    problem,
)

ADMIN_URL = "http://admin.test"
TOKEN = "s3cret"
ACTIONS = ["pause", "resume", "promote", "restart", "rollback"]


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
        # By default an admin API from before fleets (Starlette's bare 404 for a route it
        # lacks); a test replaces the answer with admin.routes["fleet"].
        router.get("/fleet", name="fleet").respond(404, text="Not Found")
        yield router


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize("document", [ONE, SEVERAL])
def test_status_prints_the_table(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str], document: dict
) -> None:
    admin.get("/migrations").respond(json=document)

    assert run("status") == 0

    assert capsys.readouterr().out == format_status(document) + "\n"


def test_status_of_several_is_a_line_each_without_detail(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations").respond(json=SEVERAL)

    assert run("status") == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["NAME", "trade-engine", "strategies"]


def test_status_of_one_migration(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = admin.get("/migrations/strategies").respond(json=STRATEGIES)

    assert run("status", "strategies") == 0

    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    out = capsys.readouterr().out
    assert out == format_migration(STRATEGIES) + "\n"
    assert out.startswith("migration strategies\n")


@pytest.mark.parametrize(
    ("argv", "path", "document"),
    [
        (["status"], "/migrations", SEVERAL),
        (["status", "strategies"], "/migrations/strategies", STRATEGIES),
    ],
)
def test_status_json(
    admin: respx.MockRouter,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    path: str,
    document: dict,
) -> None:
    admin.get(path).respond(json=document)

    assert run(*argv, "--json") == 0

    assert json.loads(capsys.readouterr().out) == document


def test_status_shows_the_fleet_below_the_migrations(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations").respond(json=SEVERAL)
    admin.routes["fleet"].respond(json=FLEET)

    assert run("status") == 0

    out = capsys.readouterr().out
    assert out == format_status({**SEVERAL, "fleet": FLEET}) + "\n"
    table, fleet = out.rstrip("\n").split("\n\n")
    assert table == format_status(SEVERAL)
    assert fleet.splitlines()[1] == "leader    proxy-b (epoch 7)"
    assert [line.split()[0] for line in fleet.splitlines()[3:]] == [
        "proxy-a", "proxy-b", "proxy-c",
    ]  # fmt: skip


def test_status_json_includes_the_fleet(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations").respond(json=ONE)
    admin.routes["fleet"].respond(json=FLEET)

    assert run("status", "--json") == 0

    assert json.loads(capsys.readouterr().out) == {**ONE, "fleet": FLEET}


def test_status_of_an_admin_api_without_fleet_shows_the_migrations(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations").respond(json=ONE)

    assert run("status") == 0
    assert capsys.readouterr().out == format_status(ONE) + "\n"
    assert admin.routes["fleet"].called
    assert run("status", "--json") == 0
    assert json.loads(capsys.readouterr().out) == ONE


def test_status_while_the_store_is_unreachable_still_shows_the_migrations(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations").respond(json=ONE)
    admin.routes["fleet"].mock(side_effect=lambda request: fleet_unavailable())

    assert run("status") == 0
    out = capsys.readouterr().out
    assert out.startswith(format_status(ONE) + "\n\n")
    assert f"unreachable ({UNREACHABLE_DETAIL}); 1 host known" in out
    assert "leader    unknown while the store is unreachable" in out

    assert run("status", "--json") == 0
    fleet = json.loads(capsys.readouterr().out)["fleet"]
    assert fleet["error"] == UNREACHABLE_DETAIL
    assert fleet["store"]["up"] is False
    assert [host["id"] for host in fleet["hosts"]] == ["proxy-a"]


def test_status_fails_when_the_fleet_refuses_the_token(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations").respond(json=ONE)
    admin.routes["fleet"].mock(return_value=problem(401, "bad token"))

    assert run("status") == EXIT_FAILED
    assert "refused the token" in capsys.readouterr().err


def test_status_of_an_unknown_migration_shows_the_servers_detail(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations/nope").mock(return_value=problem(404, "no migration named 'nope'"))

    assert run("status", "nope") == EXIT_FAILED

    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "cutover: no migration named 'nope'\n")


# --------------------------------------------------------------------------- actions


@pytest.mark.parametrize("action", ACTIONS)
def test_an_action_on_a_named_migration(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    listed = admin.get("/migrations").respond(json=SEVERAL)
    after = {**STRATEGIES, "phase": "paused", "weight": 25.0, "reason": f"{action} by operator"}
    route = admin.post(f"/migrations/strategies/{action}").respond(json=after)

    assert run(action, "strategies") == 0

    assert route.call_count == 1
    assert not listed.called  # a name needs no look-up
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert capsys.readouterr().out == (
        f"strategies: paused, 25% to new\nreason: {action} by operator\n"
    )


@pytest.mark.parametrize("action", ACTIONS)
def test_an_action_without_a_name_acts_on_the_only_migration(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    admin.get("/migrations").respond(json=ONE)
    route = admin.post(f"/migrations/trade-engine/{action}").respond(json=MIGRATION)

    assert run(action) == 0

    assert route.call_count == 1
    assert capsys.readouterr().out.startswith("trade-engine: progressing, 50% to engine-v2\n")


@pytest.mark.parametrize(
    ("argv", "example"),
    [
        (["pause"], "cutover pause trade-engine"),
        (["restart"], "cutover restart trade-engine"),
        (["rollback", "--reason", "pager"], "cutover rollback trade-engine"),
        (["set-weight", "30"], "cutover set-weight trade-engine 30"),
    ],
)
def test_no_name_with_several_migrations_names_them_and_exits_2(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str], argv: list[str], example: str
) -> None:
    admin.get("/migrations").respond(json=SEVERAL)
    acted = admin.route(path__startswith="/migrations/").respond(json=MIGRATION)

    assert run(*argv) == EXIT_USAGE

    assert not acted.called
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "cutover: several migrations are configured (trade-engine, strategies): name one, "
        f"e.g. {example}\n"
    )


def test_no_name_and_no_migrations_exits_2(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations").respond(json={"migrations": []})

    assert run("promote") == EXIT_USAGE

    assert capsys.readouterr().err == "cutover: the admin API lists no migrations\n"


def test_an_action_on_an_unknown_migration_shows_the_servers_detail(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.post("/migrations/nope/pause").mock(return_value=problem(404, "no migration 'nope'"))

    assert run("pause", "nope") == EXIT_FAILED

    assert capsys.readouterr().err == "cutover: no migration 'nope'\n"


def test_rollback_sends_reason(admin: respx.MockRouter) -> None:
    route = admin.post("/migrations/trade-engine/rollback").respond(json=MIGRATION)

    assert run("rollback", "trade-engine", "--reason", "pager went off") == 0

    assert json.loads(route.calls.last.request.content) == {"reason": "pager went off"}


@pytest.mark.parametrize(
    ("argv", "listing"), [(["strategies", "25"], SEVERAL), (["25"], {"migrations": [STRATEGIES]})]
)
def test_set_weight_with_and_without_a_name(
    admin: respx.MockRouter,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    listing: dict,
) -> None:
    admin.get("/migrations").respond(json=listing)
    after = {**STRATEGIES, "weight": 25.0}
    route = admin.put("/migrations/strategies/weight").respond(json=after)

    assert run("set-weight", *argv) == 0

    request = route.calls.last.request
    assert json.loads(request.content) == {"weight": 25.0}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert capsys.readouterr().out == "strategies: manual, 25% to new\n"


@pytest.mark.parametrize("argv", [["150"], ["-1"], ["lots"], ["nan"], ["strategies", "150"]])
def test_set_weight_rejects_bad_weight_before_any_request(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    route = admin.route().respond(json=SEVERAL)

    with pytest.raises(SystemExit) as exit_info:
        run("set-weight", "--", *argv)

    assert exit_info.value.code == 2
    assert "weight must be a number from 0 to 100" in capsys.readouterr().err
    assert not route.called


@pytest.mark.parametrize("name", ["a/b", "..", "."])
def test_a_name_that_is_not_one_path_segment_is_refused_before_any_request(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    route = admin.route().respond(json=SEVERAL)

    with pytest.raises(SystemExit) as exit_info:
        run("pause", name)

    assert exit_info.value.code == 2
    assert f"NAME must be a migration's name, got {name!r}" in capsys.readouterr().err
    assert not route.called


# --------------------------------------------------------------------------- connection


def test_url_and_token_options_override_env(admin: respx.MockRouter) -> None:
    route = admin.route(host="other.test", path="/migrations/x/pause").respond(json=MIGRATION)

    assert run("pause", "x", "--admin-url", "http://other.test", "--token", "t2") == 0

    assert route.calls.last.request.headers["authorization"] == "Bearer t2"


def test_unauthorized_hints_at_token(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations").mock(return_value=problem(401, "bad token"))

    assert run("status") == EXIT_FAILED

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "cutover: the admin API refused the token: set CUTOVER_ADMIN_TOKEN or --token\n"
    )


def test_the_name_look_up_fails_like_any_request(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations").mock(return_value=problem(401, "bad token"))

    assert run("pause") == EXIT_FAILED

    assert "refused the token" in capsys.readouterr().err


def test_conflict_shows_detail(admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]) -> None:
    admin.post("/migrations/strategies/resume").mock(
        return_value=problem(409, "the rollout is not paused")
    )

    assert run("resume", "strategies") == EXIT_FAILED

    assert capsys.readouterr().err == "cutover: the rollout is not paused\n"


def test_connection_refused(admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]) -> None:
    admin.get("/migrations").mock(side_effect=httpx.ConnectError("connection refused"))

    assert run("status") == EXIT_FAILED

    err = capsys.readouterr().err
    assert err.startswith(f"cutover: cannot reach the admin API at {ADMIN_URL}: ")
    assert "connection refused" in err


def test_an_address_that_is_not_an_admin_api_exits_2(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/migrations").respond(404, text="Not Found")

    assert run("status") == EXIT_USAGE

    assert capsys.readouterr().err.startswith(
        f"cutover: {ADMIN_URL} is not a Cutover admin API: it answered GET /migrations with 404 "
    )
