"""What the proxy does while new fails: the ``fallback`` to legacy and the ``breaker``."""

from __future__ import annotations

from pydantic import Field

from cutover.config.base import HttpMethods, PositiveSeconds, SectionConfig


class FallbackConfig(SectionConfig):
    """Retry a request that failed on a migration's ``to`` once on its ``from``, when safe."""

    enabled: bool = True
    methods: HttpMethods = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]
    max_replay_body: int = Field(64 * 1024, ge=0)
    statuses: list[int] = [502, 503, 504]


class BreakerConfig(SectionConfig):
    """Stop sending requests to a ``to`` backend while it fails; probe before trusting it."""

    enabled: bool = True
    failures: int = Field(5, ge=1)  # consecutive failures that open it
    failure_ratio: float = Field(0.5, gt=0, le=1)  # or this share over `window` ...
    window: PositiveSeconds = 10.0
    min_requests: int = Field(20, ge=1)  # ... with at least this many requests
    cooldown: PositiveSeconds = 10.0
    probes: int = Field(3, ge=1)  # successes in a row, while half open, that close it
