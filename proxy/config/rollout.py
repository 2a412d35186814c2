"""The ``rollout`` section: the stages and their holds."""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import field_validator

from cutover.config.base import PositiveSeconds, SectionConfig, Weight


class StageConfig(SectionConfig):
    weight: Weight
    hold: PositiveSeconds | None = None

    @field_validator("weight")
    @classmethod
    def _above_zero(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("a stage must send some traffic to new (weight above 0)")
        return value


class RolloutConfig(SectionConfig):
    stages: list[StageConfig]
    hold: PositiveSeconds = 300.0

    @field_validator("stages", mode="before")
    @classmethod
    def _numbers_are_stages(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"weight": item} if isinstance(item, int | float) else item for item in value]
        return value

    @field_validator("stages")
    @classmethod
    def _ascending(cls, value: list[StageConfig]) -> list[StageConfig]:
        if not value:
            raise ValueError("must list at least one stage")
        weights = [stage.weight for stage in value]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"weights must rise from stage to stage, got {weights}")
        return value

    def hold_for(self, index: int) -> float:
        return self.stages[index].hold or self.hold
