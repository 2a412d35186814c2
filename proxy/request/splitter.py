"""Which backend serves a request: override header, then route pin, then weight.

Sticky keys hash into 10,000 buckets with BLAKE2b (stable across processes and
machines); a key goes to ``new`` when its bucket is below ``weight × 100``. The
bucket never changes, so raising the weight only ever moves keys legacy → new.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
from dataclasses import dataclass
from hashlib import blake2b

from cutover.config import BackendName, RouteShadowConfig, Settings
from cutover.types import RawHeaders

BUCKETS = 10_000
DEFAULT_ROUTE = "default"


def bucket(key: bytes) -> int:
    """The key's bucket in [0, 10000): the same on every process and machine."""
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "big") % BUCKETS


def threshold(weight: float) -> int:
    """Buckets below this number go to ``new`` (weight is a percentage, 0.01 resolution)."""
    return round(weight * 100)


def cookie_value(header: bytes, name: bytes) -> bytes | None:
    for pair in header.split(b";"):
        key, sep, value = pair.strip().partition(b"=")
        if sep and key == name:
            return value.strip(b'"') or None
    return None


def below(prefix: str) -> str:
    """What a path longer than ``prefix`` must start with to match it, on a segment boundary:
    ``/api/v1`` matches ``/api/v1`` and ``/api/v1/x``, never ``/api/v10``."""
    return prefix if prefix.endswith("/") else prefix + "/"


@dataclass(slots=True)
class RouteRule:
    prefix: str
    below: str  # what a longer path starts with (see below())
    name: str
    pin: BackendName | None
    threshold: int | None
    deprecation: bool
    shadow: RouteShadowConfig | None


@dataclass(slots=True)
class Decision:
    backend: BackendName
    route: str
    reason: str  # "override" | "pin" | "weight"
    deprecation: bool
    set_cookie: bytes | None = None
    shadow: RouteShadowConfig | None = None
    fallback: bool = False  # served by legacy after new failed
    judged: bool = False  # the breaker has this request's outcome


class Splitter:
    def __init__(self, settings: Settings) -> None:
        split = settings.split
        kind, _, name = split.sticky.partition(":")
        self.sticky_kind = kind
        # Header names are case-insensitive (ASGI lowercases them); cookie names are not.
        self.sticky_name = (name.lower() if kind == "header" else name).encode("latin-1")
        self.override_header = split.override_header.lower().encode("latin-1")
        self.override_allowed_from = tuple(split.override_allowed_from)
        self.weight = split.weight
        self._threshold = threshold(split.weight)
        self.rules = [
            RouteRule(
                prefix=route.prefix,
                below=below(route.prefix),
                name=route.name,
                pin=route.backend,
                threshold=None if route.weight is None else threshold(route.weight),
                deprecation=route.deprecation,
                shadow=route.shadow if route.shadow is not None and route.shadow.enabled else None,
            )
            for route in settings.routes
        ]

    def set_weight(self, weight: float) -> None:
        """Change the default weight; takes effect on the next request."""
        self._threshold = threshold(weight)
        self.weight = weight

    def route_for(self, path: str) -> RouteRule | None:
        for rule in self.rules:
            if path.startswith(rule.below) or path == rule.prefix:
                return rule
        return None

    def may_override(self, client: tuple[str, int] | None) -> bool:
        if not self.override_allowed_from:
            return True
        if client is None:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.override_allowed_from)

    def decide(self, path: str, headers: RawHeaders, client: tuple[str, int] | None) -> Decision:
        override = sticky = None
        want_header = self.sticky_kind == "header"
        want_cookie = self.sticky_kind == "cookie"
        for name, value in headers:
            if name == self.override_header:
                override = value
            elif want_header and name == self.sticky_name:
                sticky = value
            elif want_cookie and name == b"cookie" and sticky is None:
                sticky = cookie_value(value, self.sticky_name)

        set_cookie = None
        if want_cookie and sticky is None:
            sticky = secrets.token_urlsafe(16).encode("ascii")
            set_cookie = self.sticky_name + b"=" + sticky + b"; Path=/; HttpOnly; SameSite=Lax"
        elif self.sticky_kind == "client_ip" and client is not None:
            sticky = client[0].encode("latin-1")

        rule = self.route_for(path)
        route = rule.name if rule is not None else DEFAULT_ROUTE
        deprecation = rule.deprecation if rule is not None else True
        shadow = rule.shadow if rule is not None else None

        if (override == b"new" or override == b"legacy") and self.may_override(client):
            backend: BackendName = "new" if override == b"new" else "legacy"
            return Decision(backend, route, "override", deprecation, set_cookie, shadow)
        if rule is not None and rule.pin is not None:
            return Decision(rule.pin, route, "pin", deprecation, set_cookie, shadow)

        limit = self._threshold if rule is None or rule.threshold is None else rule.threshold
        point = bucket(sticky) if sticky else random.random() * BUCKETS
        backend = "new" if point < limit else "legacy"
        return Decision(backend, route, "weight", deprecation, set_cookie, shadow)
