"""The ``split`` section (stickiness, the override header, the default migration's weight)
and the ``routes`` list (per-prefix pins, weights, shadowing and fallback)."""

from __future__ import annotations

import re

from pydantic import IPvAnyNetwork, field_validator, model_validator

from cutover.config.base import (
    BackendName,
    HttpMethods,
    PathPrefix,
    SectionConfig,
    Sticky,
    Weight,
)
from cutover.config.shadow import RouteShadowConfig

_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class SplitConfig(SectionConfig):
    # The weight of the default migration (a config without ``migrations``).
    weight: Weight = 0.0
    # Every migration's stickiness unless it sets its own.
    sticky: Sticky = "none"
    override_header: str = "X-Cutover-Backend"
    # Who may use the override header (client addresses); empty means anyone.
    override_allowed_from: list[IPvAnyNetwork] = []

    @field_validator("override_header")
    @classmethod
    def _override_header(cls, value: str) -> str:
        if value and not _TOKEN_RE.match(value):
            raise ValueError(f"{value!r} is not a valid header name")
        return value


class RouteConfig(SectionConfig):
    prefix: PathPrefix
    backend: BackendName | None = None
    weight: Weight | None = None
    deprecation: bool = True
    shadow: RouteShadowConfig | None = None
    # The methods that may be served by legacy when new fails. Default: fallback.methods,
    # and none on a route pinned to a backend (it opts in by listing them).
    fallback_methods: HttpMethods | None = None

    @model_validator(mode="after")
    def _pin_or_weight(self) -> RouteConfig:
        if self.backend is not None and self.weight is not None:
            raise ValueError("set either backend (a pin) or weight, not both")
        return self

    @property
    def name(self) -> str:
        return self.prefix
