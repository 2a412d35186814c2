"""cutover.config.settings: the root's defaults and the checks that span sections (the two
listeners apart, the admin token)."""

from __future__ import annotations

import pytest

from cutover.config import parse_settings
from tests.config import BACKENDS, problems


def test_defaults() -> None:
    settings = parse_settings({"backends": BACKENDS})
    assert (settings.listen.host, settings.listen.port) == ("127.0.0.1", 8080)
    assert settings.split.weight == 0
    assert settings.split.override_header == "X-Cutover-Backend"
    assert (settings.timeouts.connect, settings.timeouts.read) == (2, 30)
    assert settings.deprecation is None and settings.routes == []


@pytest.mark.parametrize(
    ("listen", "admin"),
    [
        ("127.0.0.1:9180", "127.0.0.1:9180"),
        ("0.0.0.0:9180", "127.0.0.1:9180"),
        ("127.0.0.1:8080", "0.0.0.0:8080"),
        ("[::]:8080", "[::1]:8080"),
        ("[::1]:8080", "[0:0:0:0:0:0:0:1]:8080"),
        ("localhost:8080", "LOCALHOST:8080"),
    ],
)
def test_listeners_that_overlap_are_refused(
    listen: str, admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", "t0ken")  # a wildcard admin host needs one
    sections = {}
    for name, address in (("listen", listen), ("admin", admin)):
        host, _, port = address.rpartition(":")
        sections[name] = {"host": host.strip("[]"), "port": int(port)}
    found = problems({"backends": BACKENDS, **sections})
    assert len(found) == 1 and found[0].startswith("listen: "), found
    assert "overlaps the admin listener" in found[0]


@pytest.mark.parametrize(
    ("listen", "admin"),
    [
        (("127.0.0.1", 8080), ("127.0.0.2", 8080)),  # one port, two loopback addresses
        (("0.0.0.0", 8080), ("127.0.0.1", 9180)),
        (("127.0.0.1", 0), ("127.0.0.1", 0)),  # both pick a free port
    ],
)
def test_listeners_apart_are_accepted(listen: tuple, admin: tuple) -> None:
    settings = parse_settings(
        {
            "backends": BACKENDS,
            "listen": {"host": listen[0], "port": listen[1]},
            "admin": {"host": admin[0], "port": admin[1]},
        }
    )
    assert (settings.admin.host, settings.admin.port) == admin


@pytest.mark.parametrize("token", ["sécret", "two words", "tab\there"])
def test_an_admin_token_a_client_could_not_send_is_refused(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", token)
    assert problems({"backends": BACKENDS}) == [
        "admin_token: must be printable ASCII, without spaces (it is a bearer token)"
    ]


def test_the_view_token_is_read_from_the_environment_and_must_differ_from_the_admin_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", "admin-t0ken")
    monkeypatch.setenv("CUTOVER_VIEW_TOKEN", "admin-t0ken")
    assert problems({"backends": BACKENDS}) == [
        "view_token: must differ from the admin token (it signs in read-only)"
    ]
    monkeypatch.setenv("CUTOVER_VIEW_TOKEN", "two words")
    assert problems({"backends": BACKENDS}) == [
        "view_token: must be printable ASCII, without spaces (like the admin token)"
    ]
    monkeypatch.setenv("CUTOVER_VIEW_TOKEN", "v1ew")
    assert parse_settings({"backends": BACKENDS}).view_token.get_secret_value() == "v1ew"


def test_an_admin_api_off_loopback_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    public = {"backends": BACKENDS, "admin": {"host": "0.0.0.0"}}
    assert problems(public) == [
        "admin_token: required when admin.host (0.0.0.0) is not loopback: set CUTOVER_ADMIN_TOKEN"
    ]
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", "")  # empty is no token
    assert problems(public)[0].startswith("admin_token: required")
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", "t0ken")
    settings = parse_settings(public)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "t0ken"
