"""cutover_demo.new_backend.driver_ports: the demo's listeners moved to the given ports."""

from __future__ import annotations

import socket

import pytest

from cutover.config import Settings
from cutover_demo.new_backend.driver_ports import (
    CONFIG_PORTS,
    Ports,
    address_overrides,
    apply_ports,
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
    settings = apply_ports(demo_settings(), Ports(legacy=1, new=2, proxy=3, admin=4))
    assert address_overrides(settings) == {
        "CUTOVER_LISTEN__PORT": "3",
        "CUTOVER_ADMIN__PORT": "4",
        "CUTOVER_BACKENDS__LEGACY__URL": "http://127.0.0.1:1",
        "CUTOVER_BACKENDS__NEW__URL": "http://127.0.0.1:2",
        "CUTOVER_BACKENDS__NEW__METRICS_URL": "http://127.0.0.1:2/metrics",
    }


def test_no_port_given_keeps_the_config() -> None:
    settings = demo_settings()
    assert apply_ports(settings, CONFIG_PORTS) == settings


def test_a_metrics_url_served_elsewhere_keeps_its_port() -> None:
    settings = apply_ports(demo_settings("http://metrics.test:9100/m"), Ports(new=2))
    assert settings.backends.new.metrics_url == "http://metrics.test:9100/m"
    assert "CUTOVER_BACKENDS__NEW__METRICS_URL" in address_overrides(settings)
    bare = apply_ports(demo_settings(None), Ports(new=2))
    assert "CUTOVER_BACKENDS__NEW__METRICS_URL" not in address_overrides(bare)


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
