"""cutover.config.routing: the split's stickiness and override header, and the routes."""

from __future__ import annotations

import pytest

from cutover.config import parse_settings
from tests.config import BACKENDS, problems


@pytest.mark.parametrize("sticky", ["none", "client_ip", "header:X-User-Id", "cookie:session"])
def test_sticky_modes(sticky: str) -> None:
    settings = parse_settings({"backends": BACKENDS, "split": {"sticky": sticky}})
    assert settings.split.sticky == sticky


@pytest.mark.parametrize(
    ("sticky", "reason"),
    [
        ("query:id", "must be header:NAME, cookie:NAME, client_ip or none"),
        ("cookie:", "must be header:NAME, cookie:NAME, client_ip or none"),
        ("cookie:a;b", "'a;b' is not a valid cookie name"),
    ],
)
def test_sticky_modes_that_are_refused(sticky: str, reason: str) -> None:
    found = problems({"backends": BACKENDS, "split": {"sticky": sticky}})
    assert found == [f"split.sticky: {reason}"]


def test_the_override_header_must_be_a_header_name() -> None:
    found = problems({"backends": BACKENDS, "split": {"override_header": "X Backend"}})
    assert found == ["split.override_header: 'X Backend' is not a valid header name"]
    split = parse_settings({"backends": BACKENDS, "split": {"override_header": ""}}).split
    assert split.override_header == ""  # off


def test_a_route_is_named_by_its_prefix_and_its_fallback_methods_are_upper_cased() -> None:
    routes = [{"prefix": "/api/v2", "backend": "new", "fallback_methods": ["get"]}]
    route = parse_settings({"backends": BACKENDS, "routes": routes}).routes[0]
    assert (route.name, route.fallback_methods) == ("/api/v2", ["GET"])
    assert route.weight is None and route.deprecation
