"""Tests of cutover.request, one file per module; the config of several migrations below is
shared by them."""

from __future__ import annotations

from typing import Any

V3_URL = "http://v3.test"
# engine moves legacy -> new; strategies moves new -> v3 (new is one's to, the other's from).
ENGINE_DEPRECATION = {
    "deprecated_at": "2026-12-01T00:00:00Z",
    "sunset_at": "2027-06-01T00:00:00Z",
    "link": "https://example.com/engine",
}
STRATEGIES_DEPRECATION = {
    "deprecated_at": "2027-01-01T00:00:00Z",
    "link": "https://example.com/strategies",
}


def two_migrations(engine: float = 0, strategies: float = 0, **sections: Any) -> dict[str, Any]:
    """The proxy fixture's sections for three backends (legacy, new, v3) and two migrations:
    engine (/api/v1/backtests, legacy -> new) and strategies (/api/v1/strategies, new -> v3),
    at the weights given; ``engine_shadow``/``strategies_shadow`` in ``sections`` mirror them."""
    engine_shadow = sections.pop("engine_shadow", None)
    strategies_shadow = sections.pop("strategies_shadow", None)
    migrations = [
        {"name": "engine", "match": {"prefix": "/api/v1/backtests"}, "from": "legacy",
         "to": "new", "weight": engine, "deprecation": ENGINE_DEPRECATION},
        {"name": "strategies", "match": {"prefix": "/api/v1/strategies"}, "from": "new",
         "to": "v3", "weight": strategies, "deprecation": STRATEGIES_DEPRECATION},
    ]  # fmt: skip
    for migration, shadow in zip(migrations, (engine_shadow, strategies_shadow), strict=True):
        if shadow is not None:
            migration["shadow"] = shadow
    return {"backends": {"v3": {"url": V3_URL}}, "migrations": migrations, **sections}
