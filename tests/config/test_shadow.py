"""cutover.config.shadow: a route's shadow comparison and the shared shadow section."""

from __future__ import annotations

from cutover.config import parse_settings
from tests.config import BACKENDS, problems


def test_a_route_shadow_defaults_to_safe_methods() -> None:
    routes = [{"prefix": "/a", "shadow": {"sample": 1.0, "methods": ["get", "post"]}}]
    shadow = parse_settings({"backends": BACKENDS, "routes": routes}).routes[0].shadow
    assert shadow is not None and shadow.methods == ["GET", "POST"]
    defaults = parse_settings({"backends": BACKENDS, "routes": [{"prefix": "/a", "shadow": {}}]})
    assert defaults.routes[0].shadow is not None
    assert defaults.routes[0].shadow.methods == ["GET", "HEAD"]


def test_ignore_paths_are_checked() -> None:
    routes = [{"prefix": "/a", "shadow": {"ignore": ["$.ok", "$[bad"]}}]
    found = problems({"backends": BACKENDS, "routes": routes})
    assert len(found) == 1 and found[0].startswith("routes.0.shadow.ignore: '$[bad'"), found


def test_the_shared_section_bounds() -> None:
    found = problems({"backends": BACKENDS, "shadow": {"max_mismatch_rate": 2, "timeout": 0}})
    assert "shadow.timeout: must be greater than 0" in found
    assert any(p.startswith("shadow.max_mismatch_rate: ") for p in found), found
