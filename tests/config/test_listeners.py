"""cutover.config.listeners: whether two listeners could share an address, and loopback."""

from __future__ import annotations

import pytest

from cutover.config.listeners import AdminConfig, ListenConfig, is_loopback, listeners_overlap


@pytest.mark.parametrize(
    ("listen", "admin", "overlap"),
    [
        (("127.0.0.1", 8080), ("127.0.0.1", 8080), True),
        (("127.0.0.1", 8080), ("127.0.0.1", 9180), False),
        (("", 8080), ("127.0.0.1", 8080), True),  # "" is every address
        (("::", 8080), ("::1", 8080), True),
        (("127.0.0.1", 8080), ("127.0.0.2", 8080), False),
        (("::1", 8080), ("0:0:0:0:0:0:0:1", 8080), True),  # one address, two spellings
        (("LocalHost", 8080), ("localhost", 8080), True),
        (("127.0.0.1", 0), ("127.0.0.1", 0), False),  # port 0: each picks its own
    ],
)
def test_listeners_overlap(listen: tuple, admin: tuple, overlap: bool) -> None:
    assert (
        listeners_overlap(
            ListenConfig(host=listen[0], port=listen[1]), AdminConfig(host=admin[0], port=admin[1])
        )
        is overlap
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True),
     ("0.0.0.0", False), ("10.0.0.1", False), ("example.test", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_admin_listener_has_its_own_default_port() -> None:
    assert (ListenConfig().port, AdminConfig().port) == (8080, 9180)
