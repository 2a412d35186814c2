"""cutover_demo.new_backend.driver_ports: the demo's listeners moved to the given ports."""

from __future__ import annotations

import socket

import pytest

from cutover.config import Settings
from cutover_demo.new_backend.driver_ports import (
    CONFIG_PORTS,
    Addresses,
    Ports,
    address_overrides,
    backend,
    demo_addresses,
    host_port,
    local_url,
    port_is_free,
    with_port,
)
from tests.conftest import make_settings


def demo_settings(metrics_url: str | None = "http://127.0.0.1:8002/metrics") -> Settings:
    return make_settings(
        backends={
            "legacy": {"url": "http://127.0.0.1:8001"},
            "new": {"url": "http://127.0.0.1:8002", "metrics_url": metrics_url},
        }
    )


def test_every_port_moved() -> None:
    addresses = demo_addresses(demo_settings(), Ports(legacy=1, new=2, proxy=3, admin=4))
    assert addresses == Addresses(
        legacy_url="http://127.0.0.1:1",
        new_url="http://127.0.0.1:2",
        new_metrics_url="http://127.0.0.1:2/metrics",
        listen=("127.0.0.1", 3),
        admin=("127.0.0.1", 4),
    )
    assert address_overrides(addresses) == {
        "CUTOVER_LISTEN__PORT": "3",
        "CUTOVER_ADMIN__PORT": "4",
    }


def test_no_port_given_keeps_the_config() -> None:
    settings = demo_settings()
    assert demo_addresses(settings, CONFIG_PORTS) == Addresses(
        legacy_url="http://127.0.0.1:8001",
        new_url="http://127.0.0.1:8002",
        new_metrics_url="http://127.0.0.1:8002/metrics",
        listen=(settings.listen.host, settings.listen.port),
        admin=(settings.admin.host, settings.admin.port),
    )


def test_a_metrics_url_served_elsewhere_keeps_its_port() -> None:
    addresses = demo_addresses(demo_settings("http://metrics.test:9100/m"), Ports(new=2))
    assert addresses.new_metrics_url == "http://metrics.test:9100/m"
    assert demo_addresses(demo_settings(None), Ports(new=2)).new_metrics_url is None


def test_a_backend_by_name() -> None:
    settings = demo_settings()
    assert backend(settings, "new").url == "http://127.0.0.1:8002"
    with pytest.raises(KeyError):
        backend(settings, "canary")


@pytest.mark.parametrize(
    ("url", "port", "expected"),
    [
        ("http://127.0.0.1:8001", 9, "http://127.0.0.1:9"),
        ("http://h/base", 9, "http://h:9/base"),
        ("http://[::1]:8001/m", 9, "http://[::1]:9/m"),
    ],
)
def test_with_port(url: str, port: int, expected: str) -> None:
    assert with_port(url, port) == expected


def test_addresses() -> None:
    assert host_port("http://h:81/x") == ("h", 81)
    assert host_port("http://h") == ("h", 80)
    assert local_url("0.0.0.0", 8080) == "http://127.0.0.1:8080"
    assert local_url("::", 8080) == "http://127.0.0.1:8080"
    assert local_url("127.0.0.2", 8080) == "http://127.0.0.2:8080"


def test_port_is_free() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        assert not port_is_free("127.0.0.1", held.getsockname()[1])
