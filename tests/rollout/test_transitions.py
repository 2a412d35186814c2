"""Which transition each actor makes from which phase, as pure functions of the state:
nothing here saves, changes or waits."""

from __future__ import annotations

import pytest

from cutover.config import MigrationConfig, RolloutConfig
from cutover.rollout import transitions
from cutover.rollout.checks import Verdict
from cutover.rollout.state import RolloutState, Transition
from cutover.rollout.transitions import RolloutError
from cutover.vocabulary import Actor, CheckResult, Phase, TransitionKind
from tests.conftest import make_settings

AT = 1_000.0


def staged() -> RolloutConfig:
    config = make_settings(rollout={"stages": [10, 50, 100], "hold": 60}).rollout
    assert config is not None
    return config


def state(phase: Phase, weight: float = 10.0) -> RolloutState:
    start = Transition(1.0, None, Phase.PROGRESSING, None, 10.0, "start", Actor.STARTUP)
    return RolloutState(phase=phase, weight=weight, history=[start])


def default_migration(**sections: object) -> MigrationConfig:
    (migration,) = make_settings(**sections).migration_list
    return migration


def test_the_initial_state() -> None:
    assert transitions.initial_state(default_migration(split={"weight": 20})) == RolloutState(
        Phase.MANUAL, 20.0
    )
    staged = default_migration(rollout={"stages": [10, 50]}, split={"weight": 0})
    assert transitions.initial_state(staged) == RolloutState(Phase.PROGRESSING, 10.0)
    higher = default_migration(rollout={"stages": [10, 50]}, split={"weight": 30})
    assert transitions.initial_state(higher).weight == 30


def test_each_migration_starts_from_its_own_config() -> None:
    settings = make_settings(
        migrations=[
            {"name": "staged", "match": {"prefix": "/a"}, "from": "legacy", "to": "new",
             "rollout": {"stages": [25, 100]}},
            {"name": "manual", "match": {"prefix": "/b"}, "from": "new", "to": "legacy",
             "weight": 40},
        ]
    )  # fmt: skip
    staged, manual = settings.migration_list
    assert transitions.initial_state(staged) == RolloutState(Phase.PROGRESSING, 25.0)
    assert transitions.initial_state(manual) == RolloutState(Phase.MANUAL, 40.0)


def test_the_start_has_no_previous_phase() -> None:
    made, new = transitions.start(RolloutState(Phase.PROGRESSING, 10.0), AT)
    assert (made.from_phase, made.from_weight, made.to_phase, made.to_weight) == (
        None, None, Phase.PROGRESSING, 10.0,
    )  # fmt: skip
    assert (made.actor, made.kind, made.at) == (Actor.STARTUP, TransitionKind.START, AT)
    assert new.history == [made]


def test_a_transition_leaves_the_state_it_started_from_alone() -> None:
    before = state(Phase.PROGRESSING)
    made, new = transitions.pause(before, AT)
    assert before.phase == Phase.PROGRESSING and len(before.history) == 1
    assert (new.phase, new.weight, new.reason) == (Phase.PAUSED, 10.0, "paused by operator")
    assert new.history == [*before.history, made]
    assert (made.from_phase, made.to_phase, made.actor) == (
        Phase.PROGRESSING, Phase.PAUSED, Actor.OPERATOR,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "action", "refusal"),
    [
        (Phase.PAUSED, "pause", "only a progressing rollout can be paused; it is paused"),
        (Phase.PROGRESSING, "resume", "only a paused rollout can be resumed; it is progressing"),
        (Phase.ROLLED_BACK, "resume", "it is rolled_back (use restart after a rollback)"),
        (Phase.ROLLED_BACK, "promote", "the rollout was rolled back; restart it first"),
        (Phase.ROLLED_BACK, "rollback", "already rolled back"),
        (Phase.PAUSED, "restart", "restart is for after a rollback; the rollout is paused"),
    ],
)
def test_what_each_phase_refuses(phase: Phase, action: str, refusal: str) -> None:
    calls = {
        "pause": lambda s: transitions.pause(s, AT),
        "resume": lambda s: transitions.resume(s, staged(), AT),
        "promote": lambda s: transitions.promote(s, staged(), AT),
        "rollback": lambda s: transitions.rollback(s, AT),
        "restart": lambda s: transitions.restart(s, staged(), 0.0, AT),
    }
    with pytest.raises(RolloutError) as refused:
        calls[action](state(phase))
    assert refusal in str(refused.value)


def test_without_stages_there_is_nothing_to_resume_or_promote() -> None:
    with pytest.raises(RolloutError, match="the weight is manual"):
        transitions.resume(state(Phase.MANUAL), None, AT)
    with pytest.raises(RolloutError, match="use set-weight"):
        transitions.promote(state(Phase.MANUAL), None, AT)


def test_promotion_goes_stage_by_stage_and_ends_promoted() -> None:
    made, new = transitions.promote(state(Phase.PROGRESSING, 10), staged(), AT)
    assert (made.kind, new.phase, new.weight) == (TransitionKind.PROMOTE, Phase.PROGRESSING, 50)
    made, new = transitions.promote(new, staged(), AT)
    assert (new.phase, new.weight) == (Phase.PROMOTED, 100)
    with pytest.raises(RolloutError, match=r"already at the last stage \(100%\)"):
        transitions.promote(new, staged(), AT)
    # A paused rollout promoted by hand stays paused, one stage up.
    _, paused = transitions.promote(state(Phase.PAUSED, 10), staged(), AT)
    assert (paused.phase, paused.weight) == (Phase.PAUSED, 50)


def test_the_guard_promotes_with_its_own_reason() -> None:
    made, _ = transitions.guard_promote(state(Phase.PROGRESSING), staged(), AT)
    assert (made.actor, made.reason) == (Actor.GUARD, "every check passed for the stage's hold")


@pytest.mark.parametrize(
    ("verdict", "reason"),
    [
        (Verdict("error_rate", CheckResult.FAIL, 0.3, 0.05), "error_rate 0.3 > 0.05"),
        (Verdict("memory", CheckResult.ERROR, None, 1.5, "no reading"), "memory n/a > 1.5"),
        (Verdict("shadow", CheckResult.FAIL, 0.5, None, "5 differed"), "shadow: 5 differed"),
    ],
)
def test_a_guard_rollback_says_which_check_and_keeps_its_verdict(verdict, reason) -> None:
    made, new = transitions.guard_rollback(state(Phase.PROGRESSING, 50), AT, verdict)
    assert (new.phase, new.weight, made.actor, made.reason) == (
        Phase.ROLLED_BACK, 0.0, Actor.GUARD, reason,
    )  # fmt: skip
    assert made.failure == new.failure == verdict.as_dict()


def test_an_operator_rollback_has_a_reason() -> None:
    assert transitions.rollback(state(Phase.PROGRESSING), AT)[0].reason == "rolled back by operator"
    assert transitions.rollback(state(Phase.PAUSED), AT, "bad numbers")[1].reason == "bad numbers"


def test_restart_goes_back_to_the_first_stage_and_takes_the_baseline_again() -> None:
    rolled_back = state(Phase.ROLLED_BACK, 0)
    rolled_back.baseline_memory_bytes = 1e8
    _, new = transitions.restart(rolled_back, staged(), 5.0, AT)
    assert (new.phase, new.weight, new.baseline_memory_bytes) == (Phase.PROGRESSING, 10, None)
    _, manual = transitions.restart(rolled_back, None, 5.0, AT)
    assert (manual.phase, manual.weight) == (Phase.MANUAL, 5.0)


def test_set_weight_pauses_a_staged_rollout() -> None:
    _, new = transitions.set_weight(state(Phase.PROGRESSING), staged(), 30, AT)
    assert (new.phase, new.weight, new.reason) == (
        Phase.PAUSED, 30, "weight set to 30% by operator",
    )  # fmt: skip
    assert transitions.set_weight(state(Phase.MANUAL), None, 30, AT)[1].phase == Phase.MANUAL
    with pytest.raises(RolloutError, match="between 0 and 100"):
        transitions.set_weight(state(Phase.PAUSED), staged(), 100.5, AT)


def test_judging_starts_at_a_start_or_on_leaving_a_rollback() -> None:
    history = [Transition(1.0, None, Phase.PROGRESSING, None, 10.0, "start", Actor.STARTUP)]
    assert transitions.judging_since(history) == 1.0
    history.append(Transition(2.0, Phase.PROGRESSING, Phase.PAUSED, 10, 10, "", Actor.OPERATOR,
                              TransitionKind.PAUSE))  # fmt: skip
    history.append(Transition(3.0, Phase.PAUSED, Phase.ROLLED_BACK, 10, 0, "", Actor.OPERATOR,
                              TransitionKind.ROLLBACK))  # fmt: skip
    assert transitions.judging_since(history) == 1.0
    history.append(Transition(4.0, Phase.ROLLED_BACK, Phase.PAUSED, 0, 5, "", Actor.OPERATOR,
                              TransitionKind.SET_WEIGHT))  # fmt: skip
    assert transitions.judging_since(history) == 4.0
    assert transitions.judging_since([]) is None
