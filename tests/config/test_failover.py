"""cutover.config.failover: the fallback to legacy and the breaker."""

from __future__ import annotations

from cutover.config import parse_settings
from tests.config import BACKENDS, problems


def test_fallback_methods_are_upper_cased() -> None:
    fallback = {"methods": ["get", "put"], "statuses": [503]}
    settings = parse_settings({"backends": BACKENDS, "fallback": fallback})
    assert (settings.fallback.methods, settings.fallback.statuses) == (["GET", "PUT"], [503])
    assert settings.fallback.enabled


def test_breaker_bounds() -> None:
    found = problems({"backends": BACKENDS, "breaker": {"failures": 0, "failure_ratio": 0}})
    assert {p.split(":")[0] for p in found} == {"breaker.failures", "breaker.failure_ratio"}
