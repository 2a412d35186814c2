"""The ``cutover demo`` driver's addresses: the four listeners, moved to the ports given on
the command line and handed to the proxy child as CUTOVER_* variables."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cutover.config import Settings


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
    with socket.socket() as probe:
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


def apply_ports(settings: Settings, ports: Ports) -> Settings:
    """``settings`` with the demo's four listeners moved to ``ports`` (the new backend's
    metrics_url too, when it is served by the new backend itself)."""
    backends = settings.backends
    legacy, new = backends.legacy, backends.new
    if ports.legacy is not None:
        legacy = legacy.model_copy(update={"url": with_port(legacy.url, ports.legacy)})
    if ports.new is not None:
        update = {"url": with_port(new.url, ports.new)}
        if new.metrics_url and urlsplit(new.metrics_url).netloc == urlsplit(new.url).netloc:
            update["metrics_url"] = with_port(new.metrics_url, ports.new)
        new = new.model_copy(update=update)
    sections: dict[str, Any] = {
        "backends": backends.model_copy(update={"legacy": legacy, "new": new})
    }
    if ports.proxy is not None:
        sections["listen"] = settings.listen.model_copy(update={"port": ports.proxy})
    if ports.admin is not None:
        sections["admin"] = settings.admin.model_copy(update={"port": ports.admin})
    return settings.model_copy(update=sections)


def address_overrides(settings: Settings) -> dict[str, str]:
    """CUTOVER_* variables that give the proxy child the demo's addresses."""
    overrides = {
        "CUTOVER_LISTEN__PORT": str(settings.listen.port),
        "CUTOVER_ADMIN__PORT": str(settings.admin.port),
        "CUTOVER_BACKENDS__LEGACY__URL": settings.backends.legacy.url,
        "CUTOVER_BACKENDS__NEW__URL": settings.backends.new.url,
    }
    if settings.backends.new.metrics_url:
        overrides["CUTOVER_BACKENDS__NEW__METRICS_URL"] = settings.backends.new.metrics_url
    return overrides
