"""The configured stages read against a weight: the stage reached, the next one, its hold.

``None`` throughout when no stages are configured (the weight is manual)."""

from __future__ import annotations

from cutover.config import RolloutConfig


def stage_index(config: RolloutConfig | None, weight: float) -> int | None:
    """Index of the highest stage at or below ``weight`` (None below the first one)."""
    if config is None:
        return None
    reached = [i for i, stage in enumerate(config.stages) if stage.weight <= weight]
    return reached[-1] if reached else None


def next_weight(config: RolloutConfig | None, weight: float) -> float | None:
    """The weight of the first stage above ``weight`` (None at or past the last one)."""
    if config is None:
        return None
    above = [stage.weight for stage in config.stages if stage.weight > weight]
    return above[0] if above else None


def hold_at(config: RolloutConfig | None, weight: float) -> float | None:
    """How long every check must pass at ``weight`` before the next promotion: its stage's
    hold, or the rollout's own below the first stage."""
    if config is None:
        return None
    index = stage_index(config, weight)
    return config.hold_for(index) if index is not None else config.hold


def is_last(config: RolloutConfig, weight: float) -> bool:
    return weight == config.stages[-1].weight
