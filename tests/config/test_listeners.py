"""cutover.config.listeners: whether two listeners could share an address, and loopback."""

from __future__ import annotations

import pytest

from cutover.config.listeners import AdminConfig, ListenConfig, is_loopback, listeners_overlap
from tests.config import BACKENDS, problems


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


def test_trusted_proxies_are_networks_and_none_by_default() -> None:
    assert ListenConfig().trusted_proxies == []
    networks = ListenConfig(trusted_proxies=["10.0.0.0/8", "fd00::/8", "192.0.2.1"])
    assert [str(n) for n in networks.trusted_proxies] == ["10.0.0.0/8", "fd00::/8", "192.0.2.1/32"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [("10.0.0.1/8", "10.0.0.1/8 has host bits set"), ("proxy.internal", "does not appear"),
     ("10.0.0.0/33", "10.0.0.0/33")],
)  # fmt: skip
def test_a_bad_trusted_proxy_is_refused_naming_the_field(value: str, reason: str) -> None:
    found = problems({"backends": BACKENDS, "listen": {"trusted_proxies": [value]}})
    assert len(found) == 1
    assert found[0].startswith(f"listen.trusted_proxies: {value!r} is not a network in CIDR")
    assert reason in found[0]
