"""The ``listen`` and ``admin`` sections (``listen.tls`` is in ``tls``), and whether two
listeners' addresses overlap."""

from __future__ import annotations

import ipaddress

from pydantic import Field, IPvAnyNetwork, field_validator

from cutover.config.base import PositiveSeconds, SectionConfig
from cutover.config.tls import TlsConfig


class ListenerConfig(SectionConfig):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    keep_alive: PositiveSeconds = 5.0  # idle seconds before a client connection is closed


class ListenConfig(ListenerConfig):
    tls: TlsConfig | None = None  # HTTPS for clients; plain HTTP without it
    # Load balancers in front: from these peers X-Forwarded-For / Forwarded name the client.
    trusted_proxies: list[IPvAnyNetwork] = []

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        for item in value if isinstance(value, list) else ():
            try:
                ipaddress.ip_network(item)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{item!r} is not a network in CIDR notation ({exc})") from None
        return value


class AdminConfig(ListenerConfig):
    port: int = Field(9180, ge=0, le=65535)


def _host_key(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return host.lower()


def _wildcard(host: str) -> bool:
    key = _host_key(host)
    return host == "" or (not isinstance(key, str) and key.is_unspecified)


def listeners_overlap(listen: ListenerConfig, admin: ListenerConfig) -> bool:
    """Whether one address could be both listeners': the same port (0 picks a free one,
    so never) on the same host, or on a wildcard host (0.0.0.0, ::) on either side."""
    if listen.port == 0 or listen.port != admin.port:
        return False
    if _wildcard(listen.host) or _wildcard(admin.host):
        return True
    return _host_key(listen.host) == _host_key(admin.host)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
