"""The ``cutover demo`` driver's addresses: the four listeners, moved to the ports given on
the command line; the proxy child gets its listeners' ports as CUTOVER_* variables."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from cutover.config import Settings
    from cutover.config.backends import BackendConfig


@dataclass(frozen=True)
class Ports:
    """Ports from the command line, each replacing the config's (None: the config's)."""

    legacy: int | None = None
    new: int | None = None
    proxy: int | None = None
    admin: int | None = None


CONFIG_PORTS = Ports()  # every port the config's


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def local_url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen there now. The servers set SO_REUSEADDR, so the probe
    does too: connections of a demo just stopped (TIME_WAIT) do not make a port taken."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


@dataclass(frozen=True)
class Addresses:
    """Where the demo's four listeners are: the config's, moved to the given ports."""

    legacy_url: str
    new_url: str
    new_metrics_url: str | None
    listen: tuple[str, int]
    admin: tuple[str, int]


def backend(settings: Settings, name: str) -> BackendConfig:
    """The config's backend ``name``; KeyError when there is none."""
    backends: Any = settings.backends
    if isinstance(backends, Mapping):
        return backends[name]
    # The config before issue 12: exactly legacy and new, as attributes.
    if name not in type(backends).model_fields:
        raise KeyError(name)
    return getattr(backends, name)


def demo_addresses(settings: Settings, ports: Ports) -> Addresses:
    """The demo's addresses: the config's, each moved to the port given (the new backend's
    metrics_url too, when it is served by the new backend itself)."""
    legacy, new = backend(settings, "legacy"), backend(settings, "new")
    legacy_url, new_url, metrics_url = legacy.url, new.url, new.metrics_url
    if ports.legacy is not None:
        legacy_url = with_port(legacy_url, ports.legacy)
    if ports.new is not None:
        if metrics_url and urlsplit(metrics_url).netloc == urlsplit(new_url).netloc:
            metrics_url = with_port(metrics_url, ports.new)
        new_url = with_port(new_url, ports.new)
    return Addresses(
        legacy_url=legacy_url,
        new_url=new_url,
        new_metrics_url=metrics_url,
        listen=(settings.listen.host, settings.listen.port if ports.proxy is None else ports.proxy),
        admin=(settings.admin.host, settings.admin.port if ports.admin is None else ports.admin),
    )


def address_overrides(addresses: Addresses) -> dict[str, str]:
    """CUTOVER_* variables that give the proxy child the demo's listener ports (the backends'
    addresses go into the demo's copy of the config: see driver_config)."""
    return {
        "CUTOVER_LISTEN__PORT": str(addresses.listen[1]),
        "CUTOVER_ADMIN__PORT": str(addresses.admin[1]),
    }
