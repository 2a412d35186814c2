"""What the admin commands print (cutover.cli.render), from migration documents alone."""

from __future__ import annotations

import pytest

from cutover.cli.render import (
    duration,
    format_action,
    format_detail,
    format_fleet,
    format_json,
    format_migration,
    format_status,
    format_table,
    history_line,
    history_lines,
    match_line,
    number,
    stage_line,
    worst_check,
)
from tests.cli.answers import (
    FILE_FLEET,
    FLEET,
    MIGRATION,
    ONE,
    SEVERAL,
    STRATEGIES,
    UNREACHABLE_DETAIL,
    host,
)

QUIET = {
    **MIGRATION,
    "phase": "manual",
    "stage": None,
    "stages": [],
    "reason": None,
    "failure": None,
    "healthy_for": None,
    "next_promotion_in": None,
    "history": [],
}


# --------------------------------------------------------------------------- the table


def test_a_line_per_migration_in_aligned_columns() -> None:
    assert format_status(SEVERAL).splitlines() == [
        "NAME          PHASE        WEIGHT  STAGE  NEXT    WORST CHECK",
        "trade-engine  progressing  50%     2/3    3m 20s  fail latency 0.91 vs 0.5",
        "strategies    manual       0%      -      -       -",
    ]


def test_one_migration_is_followed_by_its_detail() -> None:
    out = format_status(ONE)
    table, detail = out.split("\n\n")
    assert table == format_table([MIGRATION])
    assert detail == format_detail(MIGRATION)


def test_no_migrations() -> None:
    assert format_status({"migrations": []}) == "no migrations configured"


def test_stage_column_without_a_current_stage() -> None:
    lines = format_table([{**MIGRATION, "stage": None}])
    assert lines.splitlines()[1].split()[3] == "-/3"


@pytest.mark.parametrize(
    ("results", "shown"),
    [
        (["pass", "nodata", "error", "fail"], "fail d"),
        (["pass", "error", "nodata", "error"], "error b"),
        (["pass", "nodata", "pass", "pass"], "nodata b"),
        (["pass", "pass", "pass", "pass"], "pass a"),  # a tie: the first listed
        (["pass", "surprise", "pass", "pass"], "pass a"),  # an unknown result is not worse
    ],
)
def test_the_worst_verdict_is_shown(results: list[str], shown: str) -> None:
    checks = {
        name: {"result": result, "value": 2.0, "threshold": 1.5}
        for name, result in zip("abcd", results, strict=True)
    }
    assert worst_check(checks) == f"{shown} 2 vs 1.5"


def test_no_checks_is_a_dash() -> None:
    assert worst_check({}) == "-"
    assert worst_check({"memory": {"result": "nodata", "value": None}}) == "nodata memory - vs -"


# --------------------------------------------------------------------------- one migration


def test_migration_detail_is_headed_by_name_match_and_backends() -> None:
    lines = format_migration(MIGRATION).splitlines()
    assert lines[:5] == [
        "migration trade-engine",
        "match     /api/v1/backtests/ (POST)",
        "backends  legacy -> engine-v2",
        "phase     progressing",
        "weight    50% to engine-v2",
    ]
    assert format_migration(MIGRATION).endswith(format_detail(MIGRATION))


@pytest.mark.parametrize(
    ("match", "text"),
    [
        ({"prefix": "/api/v1/strategies", "methods": None}, "/api/v1/strategies (all methods)"),
        ({"prefix": "/", "methods": []}, "/ (all methods)"),
        ({"prefix": "/x", "methods": ["GET", "POST"]}, "/x (GET, POST)"),
        ({}, "? (all methods)"),
    ],
)
def test_match_line(match: dict, text: str) -> None:
    assert match_line(match) == text


def test_detail() -> None:
    out = format_detail(MIGRATION)
    assert "phase     progressing" in out
    assert "weight    50% to engine-v2" in out
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
    assert "new" not in out  # the backend is the document's "to"


def test_detail_without_rollout() -> None:
    out = format_detail(QUIET)
    assert "stage     none (no rollout configured)" in out
    assert "reason    -" in out
    assert "failure" not in out
    assert "next      no automatic promotion pending" in out
    assert "history   none" in out


def test_detail_lines_in_order() -> None:
    out = format_detail({**QUIET, "checks": {}, "breaker": {"state": "open"}})
    assert out.splitlines() == [
        "phase     manual",
        "weight    50% to engine-v2",
        "stage     none (no rollout configured)",
        "reason    -",
        "next      no automatic promotion pending",
        "breaker   open (engine-v2)",
        "checks    none",
        "history   none",
    ]


def test_a_document_missing_fields_still_renders() -> None:
    assert format_migration({}).splitlines()[:5] == [
        "migration ?",
        "match     ? (all methods)",
        "backends  ? -> ?",
        "phase     ?",
        "weight    -% to ?",
    ]
    assert format_action({}) == "?: ?, -% to ?"
    assert format_table([{}]).splitlines()[1].split() == ["?", "?", "-%", "-", "-", "-"]


# --------------------------------------------------------------------------- actions, JSON


def test_action() -> None:
    assert format_action({**STRATEGIES, "phase": "paused", "weight": 25.0}) == (
        "strategies: paused, 25% to new"
    )
    assert format_action({**MIGRATION, "phase": "rolled_back", "weight": 0, "reason": "pager"}) == (
        "trade-engine: rolled_back, 0% to engine-v2\nreason: pager"
    )


def test_json_is_indented() -> None:
    assert format_json({"phase": "manual"}) == '{\n  "phase": "manual"\n}'


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (50.0, "50"), (3, "3"), (0.91, "0.91"), (1 / 3, "0.3333"), ("x", "x")],
)
def test_number(value: object, text: str) -> None:
    assert number(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-5, "0s"), (59.6, "1m"), (200, "3m 20s"), (3600, "1h"), (3661, "1h 1m 1s")],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_stage_out_of_range() -> None:
    stages = [{"weight": 10.0}, {"weight": 100.0}]
    assert stage_line({"stages": stages, "stage": None}) == "none of 2"
    assert stage_line({"stages": stages, "stage": 2}) == "none of 2"
    assert stage_line({"stages": stages, "stage": 0}) == "1/2 (10%)"  # no hold given


def test_history_shows_the_last_five() -> None:
    entries = MIGRATION["history"]
    assert history_lines(entries[:5])[0] == "history"
    assert len(history_lines(entries)) == 6


def test_a_transition_made_from_the_console_names_the_role() -> None:
    entry = {"at": "2026-12-01T19:00:00.000Z", "actor": "operator", "from_phase": "progressing",
             "from_weight": 25.0, "to_phase": "rolled_back", "to_weight": 0.0,
             "reason": "bad canary", "role": "admin"}  # fmt: skip
    assert history_line(entry).endswith("rolled_back 0%  bad canary  [console: admin]")
    assert history_line({**entry, "role": None}).endswith("bad canary")


# --------------------------------------------------------------------------- the fleet


def test_the_fleet_names_the_store_the_leader_and_each_host() -> None:
    assert format_fleet(FLEET).splitlines() == [
        "fleet     redis redis://redis.lan:6379/0, 3 hosts, answered by proxy-a",
        "leader    proxy-b (epoch 7)",
        "HOST     PROXY             ADMIN             LAST SEEN  VERSION",
        "proxy-a  proxy-a.lan:8080  proxy-a.lan:9180  0s ago     0.4.1",
        "proxy-b  proxy-b.lan:8080  proxy-b.lan:9180  1s ago     0.4.1",
        "proxy-c  proxy-c.lan:8080  proxy-c.lan:9180  3s ago     0.4.1",
    ]


def test_the_fleet_follows_the_migrations_and_their_detail() -> None:
    blocks = format_status({**ONE, "fleet": FLEET}).split("\n\n")
    assert blocks == [format_table([MIGRATION]), format_detail(MIGRATION), format_fleet(FLEET)]


def test_the_file_backends_one_host_is_no_fleet_block_in_the_status() -> None:
    assert format_status({**ONE, "fleet": FILE_FLEET}) == format_status(ONE)


def test_the_file_backend_s_fleet_is_one_host_and_its_leader_has_no_epoch() -> None:
    lines = format_fleet(FILE_FLEET).splitlines()
    assert lines[:2] == [
        "fleet     file /var/lib/cutover/state.json, 1 host, answered by proxy-a",
        "leader    proxy-a",
    ]
    not_leading = format_fleet({**FILE_FLEET, "leader": None}).splitlines()[1]
    assert not_leading == (
        "leader    not the process that answered (another worker of this host may lead)"
    )


def test_a_fleet_without_a_leader() -> None:
    line = format_fleet({**FLEET, "leader": None}).splitlines()[1]
    assert line == "leader    none (no host holds the guard's lease)"


def test_a_fleet_whose_store_is_unreachable() -> None:
    fleet = {
        **FLEET,
        "hosts": [host("proxy-a", 0.0, local=True)],
        "leader": None,
        "store": {"up": False, "url": "redis://redis.lan:6379/0"},
        "error": UNREACHABLE_DETAIL,
    }
    assert format_fleet(fleet).splitlines()[:2] == [
        f"fleet     redis redis://redis.lan:6379/0 unreachable ({UNREACHABLE_DETAIL}); "
        "1 host known, answered by proxy-a",
        "leader    unknown while the store is unreachable",
    ]


def test_a_fleet_document_missing_fields_still_renders() -> None:
    assert format_fleet({"hosts": [{}]}).splitlines() == [
        "fleet     ? ?, 1 host",
        "leader    none (no host holds the guard's lease)",
        "HOST  PROXY  ADMIN  LAST SEEN  VERSION",
        "?     ?      ?      ?          ?",
    ]
