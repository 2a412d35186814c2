"""cutover.config.limits: timeouts, limits and the shutdown grace."""

from __future__ import annotations

from cutover.config import parse_settings
from tests.config import BACKENDS, problems


def test_defaults_and_an_uncapped_total() -> None:
    settings = parse_settings({"backends": BACKENDS})
    assert settings.timeouts.total is None and settings.timeouts.pool_idle == 4
    assert settings.limits.max_request_body is None
    assert settings.shutdown.grace == 30


def test_bounds() -> None:
    found = problems(
        {
            "backends": BACKENDS,
            "timeouts": {"total": 0},
            "limits": {"max_url_bytes": 10, "max_concurrent_per_backend": 0},
            "shutdown": {"grace": -1},
        }
    )
    assert {p.split(":")[0] for p in found} == {
        "timeouts.total",
        "limits.max_url_bytes",
        "limits.max_concurrent_per_backend",
        "shutdown.grace",
    }
