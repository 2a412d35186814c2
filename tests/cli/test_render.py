"""What the admin commands print (cutover.cli.render), from status documents alone."""

from __future__ import annotations

import pytest

from cutover.cli.render import (
    duration,
    format_action,
    format_json,
    format_status,
    history_lines,
    number,
    stage_line,
)
from tests.cli.answers import STATUS

QUIET = {
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


def test_status_summary() -> None:
    out = format_status(STATUS)
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


def test_status_without_rollout() -> None:
    out = format_status(QUIET)
    assert "stage     none (no rollout configured)" in out
    assert "reason    -" in out
    assert "failure" not in out
    assert "next      no automatic promotion pending" in out
    assert "history   none" in out


def test_status_lines_in_order() -> None:
    out = format_status({**QUIET, "checks": {}, "breaker": {"state": "open"}})
    assert out.splitlines() == [
        "phase     manual",
        "weight    50% to new",
        "stage     none (no rollout configured)",
        "reason    -",
        "next      no automatic promotion pending",
        "breaker   open (new)",
        "checks    none",
        "history   none",
    ]


def test_a_document_missing_fields_still_renders() -> None:
    out = format_status({})
    assert out.splitlines()[:2] == ["phase     ?", "weight    -% to new"]
    assert format_action({}) == "?, weight -% to new"


def test_action() -> None:
    assert format_action({"phase": "paused", "weight": 25.0}) == "paused, weight 25% to new"
    assert format_action({"phase": "rolled_back", "weight": 0, "reason": "pager"}) == (
        "rolled_back, weight 0% to new\nreason: pager"
    )


def test_json_is_indented() -> None:
    assert format_json({"phase": "manual"}) == '{\n  "phase": "manual"\n}'


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
    entries = STATUS["history"]
    assert history_lines(entries[:5])[0] == "history"
    assert len(history_lines(entries)) == 6
