"""The ``migrations`` list: each migration moves the requests it matches from one backend to
another, with its own stickiness, stages, guard thresholds, deprecation and dual run."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from cutover.config.base import (
    BackendName,
    HttpMethods,
    MigrationName,
    PathPrefix,
    SectionConfig,
    Sticky,
    Weight,
)
from cutover.config.cohorts import CohortConfig
from cutover.config.deprecation import DeprecationConfig
from cutover.config.guard import GuardConfig
from cutover.config.rollout import RolloutConfig
from cutover.config.routing import RouteConfig
from cutover.config.shadow import RouteShadowConfig
from cutover.request.matcher import matches

DEFAULT_MIGRATION = "default"
# The guard's keys a migration may set for itself; the rest (how often, from where) are the
# guard's, one loop for every migration.
GUARD_OVERRIDES = (
    "min_requests",
    "failures_to_rollback",
    "max_error_rate",
    "max_latency_ratio",
    "max_memory_ratio",
    "rollback_on_source_error",
)


class MatchConfig(SectionConfig):
    prefix: PathPrefix
    methods: HttpMethods | None = None  # None: every method

    def describe(self) -> str:
        methods = "all methods" if self.methods is None else ", ".join(self.methods)
        return f"{self.prefix} ({methods})"


class MigrationGuardConfig(SectionConfig):
    """The top-level ``guard``'s thresholds, overridden key by key."""

    min_requests: int | None = Field(None, ge=1)
    failures_to_rollback: int | None = Field(None, ge=1)
    max_error_rate: float | None = Field(None, ge=0, le=1)
    max_latency_ratio: float | None = Field(None, gt=0)
    max_memory_ratio: float | None = Field(None, gt=0)
    rollback_on_source_error: bool | None = None

    def over(self, guard: GuardConfig) -> GuardConfig:
        changes = {
            key: getattr(self, key) for key in GUARD_OVERRIDES if getattr(self, key) is not None
        }
        return guard.model_copy(update=changes) if changes else guard


class MigrationConfig(SectionConfig):
    model_config = ConfigDict(populate_by_name=True)

    name: MigrationName
    match: MatchConfig
    source: BackendName = Field(alias="from")
    target: BackendName = Field(alias="to")
    sticky: Sticky | None = None  # None: split.sticky
    rollout: RolloutConfig | None = None  # None: the weight is set by hand
    weight: Weight = 0.0  # where a migration with no saved state starts
    guard: MigrationGuardConfig = MigrationGuardConfig()
    # None: the top-level deprecation, if any; false: none for this migration.
    deprecation: DeprecationConfig | Literal[False] | None = None
    shadow: RouteShadowConfig | None = None
    # Checked in order before the weight; settings.py checks them against from, to and sticky.
    cohorts: list[CohortConfig] = []

    @model_validator(mode="after")
    def _two_backends(self) -> MigrationConfig:
        if self.source == self.target:
            raise ValueError(
                f"from and to are both {self.source!r}: a migration needs two backends"
            )
        return self


def mirrored(migration: MigrationConfig, routes: list[RouteConfig]) -> bool:
    """Whether some of the migration's requests are mirrored (then it has a shadow check):
    it has a ``shadow`` of its own, or a mirrored route overlaps its prefix."""
    if migration.shadow is not None and migration.shadow.enabled:
        return True
    prefix = migration.match.prefix
    return any(
        route.shadow is not None
        and route.shadow.enabled
        and (matches(prefix, route.prefix) or matches(route.prefix, prefix))
        for route in routes
    )
