"""cutover.config.rollout: the stages, their holds, and the state file."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutover.config import RolloutConfig, parse_settings
from tests.config import BACKENDS, problems


def test_numbers_are_stages_and_a_stage_may_hold_longer() -> None:
    rollout = RolloutConfig(stages=[10, {"weight": 50, "hold": 600}, 100], hold=60)
    assert [stage.weight for stage in rollout.stages] == [10, 50, 100]
    assert [rollout.hold_for(index) for index in range(3)] == [60, 600, 60]


@pytest.mark.parametrize(
    ("stages", "reason"),
    [
        ([], "rollout.stages: must list at least one stage"),
        (
            [10, 10, 50],
            "rollout.stages: weights must rise from stage to stage, got [10.0, 10.0, 50.0]",
        ),
        (
            [0, 50],
            "rollout.stages.0.weight: a stage must send some traffic to new (weight above 0)",
        ),
        ([50, 150], "rollout.stages.1.weight: must be between 0 and 100"),
    ],
)
def test_stages_that_are_refused(stages: list, reason: str) -> None:
    assert problems({"backends": BACKENDS, "rollout": {"stages": stages}}) == [reason]


def test_the_state_file_defaults_to_the_working_directory() -> None:
    assert parse_settings({"backends": BACKENDS}).state.path == Path("cutover-state.json")
