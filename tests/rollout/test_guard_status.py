"""The guard's latest evaluation shared through a file beside the state file, and what
another worker (or a restart) carries over of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cutover.rollout.checks import Verdict
from cutover.rollout.guard_status import EvaluationFile, EvaluationFileError, SharedEvaluation
from cutover.vocabulary import CheckResult

EVALUATION = SharedEvaluation(
    at=1000.0,
    judged=900.0,
    healthy_for=30.0,
    consecutive_failures=0,
    checks=(
        Verdict("error_rate", CheckResult.PASS, 0.01, 0.05, "1 of 100 requests failed"),
        Verdict("shadow", CheckResult.NODATA, None, 0.01, "too few", rolls_back=False),
    ),
)


def test_round_trip_beside_the_state_file(tmp_path: Path) -> None:
    shared = EvaluationFile(tmp_path / "state.json")
    assert shared.path == tmp_path / ".state.json.guard"
    assert shared.read_if_changed(None) == (None, None)  # nothing written yet
    failing = SharedEvaluation(1000.0, 950.0, None, 1, (EVALUATION.checks[0],))
    shared.write({"trade-engine": EVALUATION, "strategies": failing})
    stamp, read = shared.read_if_changed(None)
    assert read == {"trade-engine": EVALUATION, "strategies": failing}
    assert read is not None and read["trade-engine"].checks[0].result is CheckResult.PASS
    assert shared.read_if_changed(stamp) == (stamp, None)  # unchanged since


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"result": "great"},
            "checks.0.result: Input should be 'pass', 'fail', 'nodata' or 'error'",
        ),
        ({"surprise": 1}, "checks.0.surprise: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_an_unusable_file_is_an_error_naming_the_field(
    tmp_path: Path, change: dict, problem: str
) -> None:
    shared = EvaluationFile(tmp_path / "state.json")
    document = EVALUATION.to_json()
    document["checks"][0].update(change)  # type: ignore[index]
    shared.path.write_text(json.dumps({"migrations": {"trade-engine": document}}))
    with pytest.raises(EvaluationFileError) as caught:
        shared.read_if_changed(None)
    assert str(caught.value) == f"{shared.path}: migrations.trade-engine.{problem}"


def test_a_file_from_before_migrations_is_the_default_migrations(tmp_path: Path) -> None:
    """After an upgrade, the one rollout's last evaluation carries its hold on."""
    shared = EvaluationFile(tmp_path / "state.json")
    shared.path.write_text(json.dumps(EVALUATION.to_json()))
    assert shared.read_if_changed(None)[1] == {"default": EVALUATION}


def test_a_file_that_is_not_json_is_an_error(tmp_path: Path) -> None:
    shared = EvaluationFile(tmp_path / "state.json")
    shared.path.write_text("{half")
    with pytest.raises(EvaluationFileError, match="not valid JSON"):
        shared.read_if_changed(None)


def test_the_hold_carries_over_with_the_time_since_while_the_leader_evaluates() -> None:
    # Written 4 s ago by a leader evaluating every 5 s: the 4 s count too.
    since, failures = EVALUATION.carried_over(900.0, now=1004.0, monotonic_now=50.0, fresh=10)
    assert (since, failures) == (50.0 - 34.0, 0)


def test_the_time_nobody_watched_does_not_count() -> None:
    # After a restart (fresh 0), or a file much older than the leader's interval.
    assert EVALUATION.carried_over(900.0, now=1600.0, monotonic_now=50.0, fresh=0)[0] == 20.0
    assert EVALUATION.carried_over(900.0, now=1600.0, monotonic_now=50.0, fresh=10)[0] == 20.0
    # A clock that went back is no credit either.
    assert EVALUATION.carried_over(900.0, now=990.0, monotonic_now=50.0, fresh=10)[0] == 20.0


def test_a_hold_from_another_stage_is_not_carried_over() -> None:
    assert EVALUATION.carried_over(950.0, now=1000.0, monotonic_now=50.0, fresh=10) == (None, 0)


def test_a_run_of_failures_carries_over_without_a_hold() -> None:
    failing = SharedEvaluation(1000.0, 900.0, None, 1, ())
    assert failing.carried_over(900.0, now=1000.0, monotonic_now=50.0, fresh=10) == (None, 1)
