"""What one guard evaluation decides, as a pure function of its verdicts and the run so
far: roll back, promote, or neither, and how the run of failures and the hold go on.

A check that fails ``failures_to_rollback`` times in a row (no passing evaluation between)
rolls back; all checks passing for the stage's hold promotes. No data and source errors
neither count nor reset the failure run (source errors count as failures with
``errors_fail``); a failing check that does not roll back (shadow, by default) only blocks
promotion. A rollback decided before but not saved is decided again, whatever is found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cutover.rollout.checks import Verdict
from cutover.vocabulary import CheckResult, Phase


@dataclass(frozen=True, slots=True)
class GuardDecision:
    consecutive_failures: int
    healthy_since: float | None  # monotonic; None when not every check is passing
    rollback: Verdict | None = None  # roll back, for this verdict
    promote: bool = False


def counts_against(verdict: Verdict, *, errors_fail: bool) -> bool:
    """Whether ``verdict`` is a failure that counts towards a rollback."""
    if not verdict.rolls_back:
        return False
    return verdict.result is CheckResult.FAIL or (
        errors_fail and verdict.result is CheckResult.ERROR
    )


def decide(
    verdicts: Sequence[Verdict],
    *,
    phase: Phase,
    now: float,
    hold: float | None,
    healthy_since: float | None,
    consecutive_failures: int,
    failures_to_rollback: int,
    pending_rollback: Verdict | None = None,
    errors_fail: bool = False,
) -> GuardDecision:
    """``now`` and ``healthy_since`` are monotonic; ``hold`` is the current stage's."""
    can_roll_back = phase != Phase.ROLLED_BACK
    failing = [v for v in verdicts if counts_against(v, errors_fail=errors_fail)]
    if failing:
        failures = consecutive_failures + 1
        rolls_back = failures >= failures_to_rollback and can_roll_back
        return GuardDecision(failures, None, failing[0] if rolls_back else None)
    if pending_rollback is not None and can_roll_back:
        return GuardDecision(consecutive_failures, healthy_since, pending_rollback)
    if not verdicts or any(v.result is not CheckResult.PASS for v in verdicts):
        return GuardDecision(consecutive_failures, None)
    since = now if healthy_since is None else healthy_since
    promote = phase == Phase.PROGRESSING and hold is not None and now - since >= hold
    return GuardDecision(0, since, promote=promote)
