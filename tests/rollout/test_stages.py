"""The configured stages read against a weight, as pure functions."""

from __future__ import annotations

import pytest

from cutover.config import RolloutConfig
from cutover.rollout.stages import hold_at, is_last, next_weight, stage_index
from tests.conftest import make_settings


def stages() -> RolloutConfig:
    config = make_settings(
        rollout={"stages": [10, {"weight": 50, "hold": 600}, 100], "hold": 60}
    ).rollout
    assert config is not None
    return config


@pytest.mark.parametrize(
    ("weight", "index", "following", "hold"),
    [
        (0, None, 10, 60),  # below the first stage: the rollout's own hold
        (10, 0, 50, 60),
        (30, 0, 50, 60),  # a weight set by hand between two stages
        (50, 1, 100, 600),  # a stage's own hold
        (100, 2, None, 60),
    ],
)
def test_a_weight_against_the_stages(weight, index, following, hold) -> None:
    config = stages()
    assert stage_index(config, weight) == index
    assert next_weight(config, weight) == following
    assert hold_at(config, weight) == hold


def test_the_last_stage() -> None:
    assert is_last(stages(), 100) and not is_last(stages(), 50)


def test_without_stages_everything_is_none() -> None:
    assert (stage_index(None, 30), next_weight(None, 30), hold_at(None, 30)) == (None,) * 3
