from __future__ import annotations

from pathlib import Path

import pytest

from proxy.checks import Result, Verdict
from proxy.rollout import Rollout, RolloutError
from proxy.state import StateStore
from tests.conftest import make_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def verdicts(*results: Result) -> list[Verdict]:
    names = ("error_rate", "latency", "memory")
    return [Verdict(name, result, 0.5, 0.05) for name, result in zip(names, results, strict=False)]


PASS = verdicts(Result.PASS, Result.PASS)
FAIL = verdicts(Result.FAIL, Result.PASS)
NODATA = verdicts(Result.NODATA, Result.PASS)
ERROR = verdicts(Result.ERROR, Result.PASS)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(tmp_path: Path, clock: Clock, **sections) -> Rollout:
    sections.setdefault("rollout", {"stages": [10, 50, 100], "hold": 60})
    sections.setdefault("state", {"path": str(tmp_path / "state.json")})
    settings = make_settings(**sections)
    return Rollout.restore(settings, StateStore(settings.state.path), clock=clock)


def reload(tmp_path: Path, clock: Clock, **sections) -> Rollout:
    return make(tmp_path, clock, **sections)


def hold_passes(rollout: Rollout, clock: Clock, seconds: float, step: float = 5) -> list:
    transitions = []
    end = clock.now + seconds
    while clock.now <= end:
        if (t := rollout.evaluate(PASS)) is not None:
            transitions.append(t)
        clock.now += step
    return transitions


def test_fresh_start_is_progressing_at_the_first_stage(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock, split={"weight": 0})
    assert (rollout.phase, rollout.weight, rollout.stage()) == ("progressing", 10, 0)
    assert rollout.state.history[0].actor == "startup"
    assert StateStore(tmp_path / "state.json").load() == rollout.state


def test_without_stages_the_weight_is_manual(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock, rollout=None, split={"weight": 25})
    assert (rollout.phase, rollout.weight) == ("manual", 25)
    hold_passes(rollout, clock, 3600)
    assert rollout.weight == 25
    for _ in range(2):
        rollout.evaluate(FAIL)
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)


def test_passing_for_the_hold_promotes_stage_by_stage(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    first = hold_passes(rollout, clock, 59)
    assert first == [] and rollout.weight == 10
    clock.now += 1
    rollout.evaluate(PASS)
    assert rollout.weight == 50 and rollout.phase == "progressing"
    hold_passes(rollout, clock, 61)
    assert (rollout.phase, rollout.weight) == ("promoted", 100)
    assert [t.kind for t in rollout.state.history] == ["start", "promote", "promote"]


def test_per_stage_hold(tmp_path, clock) -> None:
    rollout = make(
        tmp_path, clock, rollout={"stages": [{"weight": 10, "hold": 10}, 100], "hold": 600}
    )
    hold_passes(rollout, clock, 10)
    assert rollout.weight == 100


@pytest.mark.parametrize("interruption", [NODATA, ERROR, FAIL])
def test_anything_but_pass_restarts_the_hold(tmp_path, clock, interruption) -> None:
    rollout = make(tmp_path, clock)
    hold_passes(rollout, clock, 50)
    rollout.evaluate(interruption)
    hold_passes(rollout, clock, 50)
    assert rollout.weight == 10  # 50 s + 50 s, but never 60 s in a row


def test_no_data_never_promotes_and_never_rolls_back(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    for _ in range(100):
        rollout.evaluate(NODATA)
        clock.now += 60
    assert (rollout.phase, rollout.weight) == ("progressing", 10)


def test_consecutive_failures_roll_back(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    assert rollout.evaluate(FAIL) is None
    transition = rollout.evaluate(FAIL)
    assert transition is not None and transition.kind == "rollback"
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)
    assert rollout.state.failure["check"] == "error_rate"
    assert rollout.state.failure["value"] == 0.5
    assert rollout.state.failure["threshold"] == 0.05
    assert "error_rate" in rollout.state.reason


def test_a_pass_between_failures_resets_the_count(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    for _ in range(5):
        rollout.evaluate(FAIL)
        rollout.evaluate(PASS)
    assert rollout.phase == "progressing"


def test_no_data_between_failures_neither_counts_nor_resets(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    rollout.evaluate(FAIL)
    rollout.evaluate(NODATA)
    assert rollout.phase == "progressing"
    rollout.evaluate(FAIL)
    assert rollout.phase == "rolled_back"


def test_source_errors_roll_back_only_when_configured(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    for _ in range(10):
        rollout.evaluate(ERROR)
    assert rollout.phase == "progressing"
    rollout.evaluate(ERROR, errors_fail=True)
    rollout.evaluate(ERROR, errors_fail=True)
    assert rollout.phase == "rolled_back"


def test_rolled_back_stays_rolled_back(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    rollout.rollback("manual test")
    hold_passes(rollout, clock, 3600)
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)
    with pytest.raises(RolloutError, match="restart"):
        rollout.resume()
    with pytest.raises(RolloutError):
        rollout.promote()
    rollout.restart()
    assert (rollout.phase, rollout.weight) == ("progressing", 10)
    assert rollout.state.baseline_memory_bytes is None


def test_promoted_is_still_guarded(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock, rollout={"stages": [100], "hold": 1})
    rollout.evaluate(FAIL)
    rollout.evaluate(FAIL)
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)


def test_pause_resume(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    rollout.pause()
    hold_passes(rollout, clock, 600)
    assert (rollout.phase, rollout.weight) == ("paused", 10)
    with pytest.raises(RolloutError):
        rollout.pause()
    rollout.resume()
    hold_passes(rollout, clock, 60)
    assert rollout.weight == 50


def test_paused_still_rolls_back(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    rollout.pause()
    rollout.evaluate(FAIL)
    rollout.evaluate(FAIL)
    assert rollout.phase == "rolled_back"


def test_operator_promote(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    rollout.promote()
    assert (rollout.phase, rollout.weight) == ("progressing", 50)
    rollout.promote()
    assert (rollout.phase, rollout.weight) == ("promoted", 100)
    with pytest.raises(RolloutError, match="last stage"):
        rollout.promote()


def test_set_weight_pauses_and_the_next_stage_is_above_it(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    rollout.set_weight(30)
    assert (rollout.phase, rollout.weight, rollout.stage()) == ("paused", 30, 0)
    rollout.resume()
    hold_passes(rollout, clock, 60)
    assert rollout.weight == 50
    with pytest.raises(RolloutError):
        rollout.set_weight(101)


def test_restart_requires_a_rollback(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    with pytest.raises(RolloutError, match="after a rollback"):
        rollout.restart()


def test_every_transition_is_saved_and_restored(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    rollout.promote()
    rollout.evaluate(FAIL)
    rollout.evaluate(FAIL)
    again = reload(tmp_path, clock, split={"weight": 99})  # config weight ignored once state exists
    assert (again.phase, again.weight) == ("rolled_back", 0)
    assert [t.kind for t in again.state.history] == ["start", "promote", "rollback"]
    assert again.state.history[-1].actor == "guard"
    hold_passes(again, clock, 3600)
    assert again.phase == "rolled_back"


def test_listeners_see_every_transition(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    seen = []
    rollout.listeners.append(lambda t, s: seen.append((t.kind, s.weight)))
    rollout.promote()
    rollout.rollback()
    assert seen == [("promote", 50), ("rollback", 0)]


def test_status_document(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    rollout.evaluate(PASS)
    clock.now += 20
    status = rollout.status()
    assert status["phase"] == "progressing"
    assert status["stages"] == [
        {"weight": 10, "hold": 60},
        {"weight": 50, "hold": 60},
        {"weight": 100, "hold": 60},
    ]
    assert status["healthy_for"] == 20
    assert status["next_promotion_in"] == 40
    assert status["checks"]["error_rate"]["result"] == "pass"
    assert status["history"][0]["at"].endswith("Z")


def test_judging_starts_at_the_start_and_again_on_leaving_a_rollback(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    started = clock.now
    assert rollout.judging_since() == started
    clock.now += 30
    rollout.pause()
    rollout.resume()
    assert rollout.judging_since() == started  # a pause does not make old readings stale
    clock.now += 30
    rollout.rollback()
    assert rollout.judging_since() == started
    clock.now += 30
    rollout.set_weight(5)  # out of rolled_back by hand
    assert rollout.judging_since() == clock.now
    clock.now += 30
    rollout.rollback()
    clock.now += 30
    rollout.restart()
    assert rollout.judging_since() == clock.now
    assert reload(tmp_path, clock).judging_since() == clock.now  # it survives a restart
