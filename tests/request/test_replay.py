"""The replay policy: which requests that failed on new legacy may serve, without sockets."""

from __future__ import annotations

import pytest

from cutover.request.replay import ReplayPolicy, fallback_methods
from tests.conftest import make_settings

DEFAULT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def policy(**sections) -> ReplayPolicy:
    return ReplayPolicy.from_settings(make_settings(**sections))


def test_a_route_without_a_list_takes_the_fallback_methods() -> None:
    settings = make_settings(routes=[{"prefix": "/api/"}])
    assert fallback_methods(settings.routes[0], settings.fallback) == DEFAULT


def test_a_pinned_route_has_none_unless_it_lists_them() -> None:
    settings = make_settings(
        routes=[
            {"prefix": "/a/", "backend": "new"},
            {"prefix": "/b/", "backend": "new", "fallback_methods": ["GET"]},
        ]
    )
    pinned, opted = settings.routes
    assert fallback_methods(pinned, settings.fallback) == frozenset()
    assert fallback_methods(opted, settings.fallback) == {"GET"}


def test_a_route_list_replaces_the_default() -> None:
    settings = make_settings(routes=[{"prefix": "/x/", "fallback_methods": ["POST"]}])
    assert fallback_methods(settings.routes[0], settings.fallback) == {"POST"}


def test_from_settings() -> None:
    replay = policy(
        fallback={"statuses": [502, 503], "max_replay_body": 10},
        routes=[{"prefix": "/x/", "fallback_methods": ["POST"]}],
    )
    assert replay.enabled is True
    assert replay.statuses == {502, 503}
    assert replay.max_body == 10
    assert replay.methods == {"/x/": {"POST"}}
    assert replay.default_methods == DEFAULT


@pytest.mark.parametrize(
    ("route", "method", "holds"),
    [
        ("/pinned/", "GET", True),  # pinned, lists nothing: stays on new
        ("/opted/", "GET", False),  # pinned, lists GET: may go to legacy
        ("/opted/", "PUT", True),
        ("default", "GET", False),  # no route: the fallback methods
        ("default", "POST", True),
    ],
)
def test_pin_holds(route: str, method: str, holds: bool) -> None:
    replay = policy(
        routes=[
            {"prefix": "/pinned/", "backend": "new"},
            {"prefix": "/opted/", "backend": "new", "fallback_methods": ["GET"]},
        ]
    )
    assert replay.pin_holds(route, method) is holds


@pytest.mark.parametrize(
    ("reason", "method", "length", "has_body", "replayable"),
    [
        ("weight", "GET", None, False, True),
        ("weight", "POST", None, False, False),  # not idempotent
        ("override", "GET", None, False, False),  # the client chose new
        ("pin", "GET", None, False, True),
        ("weight", "PUT", 100, True, True),  # a body at the limit is kept
        ("weight", "PUT", 101, True, False),  # one over is not
        ("weight", "PUT", None, True, False),  # chunked: unknown length
        ("weight", "PUT", 0, False, True),
    ],
)
def test_can_replay(
    reason: str, method: str, length: int | None, has_body: bool, replayable: bool
) -> None:
    replay = policy(fallback={"max_replay_body": 100})
    assert replay.can_replay("default", reason, method, length, has_body) is replayable


def test_nothing_is_replayed_with_fallback_off() -> None:
    replay = policy(fallback={"enabled": False})
    assert replay.can_replay("default", "weight", "GET", None, False) is False


def test_route_methods_decide_replay() -> None:
    replay = policy(routes=[{"prefix": "/x/", "fallback_methods": ["POST"]}])
    assert replay.can_replay("/x/", "weight", "POST", 2, True) is True
    assert replay.can_replay("/x/", "weight", "GET", None, False) is False
