"""What one guard evaluation decides, as a pure function of its verdicts and the run so
far (``machine.Rollout.evaluate`` applies it)."""

from __future__ import annotations

from typing import Any

from cutover.rollout.checks import Verdict
from cutover.rollout.decision import GuardDecision, counts_against, decide
from cutover.vocabulary import CheckResult, Phase

PASS = Verdict("error_rate", CheckResult.PASS)
FAIL = Verdict("error_rate", CheckResult.FAIL, 0.3, 0.05)
ERROR = Verdict("latency", CheckResult.ERROR, detail="prometheus down")
NODATA = Verdict("latency", CheckResult.NODATA)
SHADOW_FAIL = Verdict("shadow", CheckResult.FAIL, 0.5, 0.01, rolls_back=False)


def run(verdicts: list[Verdict], **run: Any) -> GuardDecision:
    options: dict[str, Any] = {
        "phase": Phase.PROGRESSING, "now": 100.0, "hold": 60.0, "healthy_since": None,
        "consecutive_failures": 0, "failures_to_rollback": 2,
    }  # fmt: skip
    return decide(verdicts, **{**options, **run})


def test_what_counts_against_new() -> None:
    assert counts_against(FAIL, errors_fail=False)
    assert not counts_against(ERROR, errors_fail=False) and counts_against(ERROR, errors_fail=True)
    assert not counts_against(SHADOW_FAIL, errors_fail=True)  # it only blocks promotion
    assert not counts_against(NODATA, errors_fail=True)


def test_failures_in_a_row_roll_back() -> None:
    first = run([FAIL, PASS], healthy_since=10.0)
    assert first == GuardDecision(consecutive_failures=1, healthy_since=None)
    second = run([FAIL, PASS], consecutive_failures=1)
    assert second == GuardDecision(2, None, rollback=FAIL)


def test_a_rolled_back_rollout_is_not_rolled_back_again() -> None:
    assert run([FAIL], phase=Phase.ROLLED_BACK, consecutive_failures=5).rollback is None
    assert run([PASS], phase=Phase.ROLLED_BACK, pending_rollback=FAIL).rollback is None


def test_source_errors_roll_back_only_when_they_count() -> None:
    assert run([ERROR], consecutive_failures=1) == GuardDecision(1, None)
    assert run([ERROR], consecutive_failures=1, errors_fail=True).rollback is ERROR


def test_a_rollback_not_saved_is_decided_again_whatever_is_found() -> None:
    decision = run([PASS], pending_rollback=FAIL, consecutive_failures=2, healthy_since=90.0)
    assert decision == GuardDecision(2, 90.0, rollback=FAIL)


def test_no_data_neither_counts_nor_resets_but_stops_the_hold() -> None:
    assert run([NODATA, PASS], consecutive_failures=1, healthy_since=50.0) == GuardDecision(1, None)
    assert run([], consecutive_failures=1) == GuardDecision(1, None)  # no verdicts at all


def test_a_failing_check_that_does_not_roll_back_blocks_promotion() -> None:
    assert run([PASS, SHADOW_FAIL], healthy_since=0.0) == GuardDecision(0, None)


def test_passing_for_the_hold_promotes() -> None:
    assert run([PASS], consecutive_failures=1) == GuardDecision(0, 100.0)  # the hold begins
    assert run([PASS], healthy_since=50.0) == GuardDecision(0, 50.0)  # 50 s of 60
    assert run([PASS], healthy_since=40.0) == GuardDecision(0, 40.0, promote=True)


def test_only_a_progressing_rollout_with_a_next_stage_promotes() -> None:
    assert not run([PASS], healthy_since=0.0, phase=Phase.PAUSED).promote
    assert not run([PASS], healthy_since=0.0, hold=None).promote
