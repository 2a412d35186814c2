"""What the console shows of a document: the actions it offers are exactly the ones the
phase allows (``rollout/transitions.py`` decides), stage i/n, the verdicts, sparklines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cutover.config import RolloutConfig
from cutover.console import views
from cutover.console.samples import Sample, Traffic
from cutover.rollout import transitions
from cutover.rollout.state import RolloutState
from cutover.vocabulary import Phase, TransitionKind

STAGED = RolloutConfig(stages=[10, 50, 100], hold=60)
ACTIONS: dict[str, Callable[[RolloutState, RolloutConfig | None], Any]] = {
    TransitionKind.PAUSE: lambda s, c: transitions.pause(s, 1.0),
    TransitionKind.RESUME: lambda s, c: transitions.resume(s, c, 1.0),
    TransitionKind.PROMOTE: lambda s, c: transitions.promote(s, c, 1.0),
    TransitionKind.ROLLBACK: lambda s, c: transitions.rollback(s, 1.0),
    TransitionKind.RESTART: lambda s, c: transitions.restart(s, c, 0.0, 1.0),
    views.WEIGHT: lambda s, c: transitions.set_weight(s, c, 30.0, 1.0),
}


def document(phase: Phase, weight: float, config: RolloutConfig | None) -> dict[str, Any]:
    stages = [] if config is None else [{"weight": s.weight, "hold": 60} for s in config.stages]
    return {"name": "m", "phase": phase, "weight": weight, "stages": stages, "stage": 0}


@pytest.mark.parametrize("config", [STAGED, None], ids=["staged", "manual"])
@pytest.mark.parametrize(
    ("phase", "weight"),
    [(Phase.PROGRESSING, 10), (Phase.PROGRESSING, 100), (Phase.PAUSED, 50),
     (Phase.PROMOTED, 100), (Phase.ROLLED_BACK, 0), (Phase.MANUAL, 30)],
)  # fmt: skip
def test_the_actions_offered_are_those_the_phase_allows(
    phase: Phase, weight: float, config: RolloutConfig | None
) -> None:
    offered = views.allowed(document(phase, weight, config))
    state = RolloutState(phase=phase, weight=weight)
    for action, make in ACTIONS.items():
        try:
            make(state, config)
            allowed = True
        except transitions.RolloutError:
            allowed = False
        assert offered[action] == allowed, (action, phase, weight)


def test_stage_verdicts_and_sparklines_of_a_row() -> None:
    doc = {
        **document(Phase.PROGRESSING, 50, STAGED), "stage": 1, "from": "legacy", "to": "new",
        "checks": {"error_rate": {"result": "pass", "value": 0.0123, "threshold": 0.05}},
        "breaker": {"state": "closed"},
    }  # fmt: skip
    samples = [
        Sample(at, {"m": 50.0}, {("m", "new"): Traffic(rps, 0.0, 0.1)})
        for at, rps in [(10.0, 2.0), (20.0, 4.0)]
    ]
    row = views.row(doc, samples)
    assert row["stage"] == "2/3" and row["breaker"] == "closed"
    assert row["verdicts"] == [
        {"check": "error_rate", "result": "pass", "value": "0.0123", "threshold": "0.05"}
    ]
    legacy, new = row["sparklines"]
    assert (legacy["backend"], legacy["now"]) == ("legacy", 0.0)
    assert (new["backend"], new["now"]) == ("new", 4.0)
    assert "<polyline" in new["svg"]
    assert views.stage_text({**doc, "stages": []}) == "manual"
