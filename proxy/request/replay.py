"""Which requests may be served by their migration's ``from`` when its ``to`` fails (or
while the breaker is open):
the replay policy, computed once from the settings, and asked per request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cutover.config import FallbackConfig, RouteConfig, Settings


def fallback_methods(route: RouteConfig, fallback: FallbackConfig) -> frozenset[str]:
    """The methods of ``route`` that legacy may serve when new fails (or while the breaker
    is open): its own list, else ``fallback.methods``; a route pinned to a backend has
    none unless it lists them."""
    if route.fallback_methods is not None:
        return frozenset(route.fallback_methods)
    return frozenset() if route.backend is not None else frozenset(fallback.methods)


@dataclass(frozen=True, slots=True)
class ReplayPolicy:
    enabled: bool
    statuses: frozenset[int]  # answers from new that count as failures
    max_body: int  # bytes of request body kept for a replay
    methods: Mapping[str, frozenset[str]]  # by route name
    default_methods: frozenset[str]  # for requests no route matched

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplayPolicy:
        fallback = settings.fallback
        return cls(
            enabled=fallback.enabled,
            statuses=frozenset(fallback.statuses),
            max_body=fallback.max_replay_body,
            methods={route.name: fallback_methods(route, fallback) for route in settings.routes},
            default_methods=frozenset(fallback.methods),
        )

    def pin_holds(self, route: str, method: str) -> bool:
        """For a request its route pins to new: whether it stays there whatever happens (the
        route did not list the method in its ``fallback_methods``)."""
        return method not in self.methods.get(route, self.default_methods)

    def can_replay(
        self, route: str, reason: str, method: str, length: int | None, has_body: bool
    ) -> bool:
        """Whether a failure on ``to`` may be retried on ``from``: not an override, an idempotent
        method (per route) and a body small enough to keep."""
        if not self.enabled or reason == "override":
            return False
        if method not in self.methods.get(route, self.default_methods):
            return False
        return not has_body or (length is not None and length <= self.max_body)
