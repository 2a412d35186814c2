"""Which backend serves a request: the override header, then a route's pin, then the first
of the migration's cohorts the request is in (``cohorts.py``), then a route's weight or the
weight of the request's migration (the longest prefix that matches, ``matcher.py``), then
``default_backend``. While a migration is rolled back its cohorts for ``to`` go to ``from``
(a broken backend is broken for beta testers too) unless they say ``survive_rollback``.

Sticky keys hash into 10,000 buckets with BLAKE2b (stable across processes and machines);
a key goes to the migration's ``to`` when its bucket is below ``weight × 100``. The bucket
never changes, so raising the weight only ever moves keys ``from`` → ``to``; and it is the
same in every migration, so the users a migration moves first are the ones every other
migration moves first too (one user sees one side of the ramp, not a mix).
"""

from __future__ import annotations

import ipaddress
import random
import secrets
from dataclasses import dataclass
from hashlib import blake2b

from cutover.config import MigrationConfig, RouteShadowConfig, Settings
from cutover.request.cohorts import Cohorts
from cutover.request.deprecation import deprecation_headers
from cutover.request.matcher import PrefixTable, Rule
from cutover.types import RawHeaders
from cutover.vocabulary import Phase

BUCKETS = 10_000
DEFAULT_ROUTE = "default"
NO_MIGRATION = "none"  # the migration label of requests outside every migration
NO_COHORT = "weight"  # the cohort label of requests no cohort decided


def bucket(key: bytes) -> int:
    """The key's bucket in [0, 10000): the same on every process and machine."""
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "big") % BUCKETS


def threshold(weight: float) -> int:
    """Buckets below this number go to ``to`` (weight is a percentage, 0.01 resolution)."""
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
    pin: str | None
    threshold: int | None
    deprecation: bool
    shadow: RouteShadowConfig | None


@dataclass(slots=True)
class MigrationRule:
    """One migration as the request path sees it; its weight is the rollout's, set live."""

    name: str
    source: str  # ``from``
    target: str  # ``to``
    sticky_kind: str  # header, cookie, client_ip or none
    sticky_name: bytes
    weight: float
    threshold: int
    deprecation: RawHeaders  # stamped on its answers from ``from`` (empty: none)
    shadow: RouteShadowConfig | None
    prefix: str = "/"  # its match prefix (the usage report's endpoint)
    cohorts: Cohorts | None = None  # None: it has none (then nothing of them is read)
    rolled_back: bool = False  # its phase, set live: its cohorts for ``to`` go to ``from``

    @classmethod
    def from_config(cls, config: MigrationConfig) -> MigrationRule:
        kind, _, name = (config.sticky or "none").partition(":")
        shadow = config.shadow if config.shadow is not None and config.shadow.enabled else None
        return cls(
            name=config.name,
            source=config.source,
            target=config.target,
            sticky_kind=kind,
            # Header names are case-insensitive (ASGI lowercases them); cookie names are not.
            sticky_name=(name.lower() if kind == "header" else name).encode("latin-1"),
            weight=config.weight,
            threshold=threshold(config.weight),
            deprecation=deprecation_headers(config.deprecation),
            shadow=shadow,
            prefix=config.match.prefix,
            cohorts=Cohorts(config.cohorts) if config.cohorts else None,
        )

    def set_weight(self, weight: float) -> None:
        self.threshold = threshold(weight)
        self.weight = weight

    def other(self, backend: str) -> str | None:
        """The migration's other backend than ``backend`` (None: not one of its two)."""
        if backend == self.source:
            return self.target
        return self.source if backend == self.target else None


@dataclass(slots=True)
class Decision:
    backend: str
    route: str
    reason: str  # "override" | "pin" | "cohort" | "weight" | "default" | "breaker"
    migration: MigrationRule | None  # the migration whose prefix the request is under
    label: str  # the migration it counts for (NO_MIGRATION: pinned, static or outside)
    deprecation: bool  # the route allows the migration's deprecation headers
    set_cookie: bytes | None = None
    shadow: RouteShadowConfig | None = None
    fallback: bool = False  # served by ``from`` after ``to`` failed
    judged: bool = False  # the breaker has this request's outcome
    cohort: str = NO_COHORT  # the label of the cohort that decided

    def fallback_backend(self) -> str | None:
        """Who may serve this request when its backend fails: the migration's ``from``, when
        the request is on its way to the migration's ``to``."""
        migration = self.migration
        if migration is not None and self.backend == migration.target:
            return migration.source
        return None


class Splitter:
    def __init__(self, settings: Settings) -> None:
        split = settings.split
        self.override_header = split.override_header.lower().encode("latin-1")
        self.override_allowed_from = tuple(split.override_allowed_from)
        self.overrides = {name.encode("latin-1"): name for name in settings.backends}
        self.default_backend = settings.default_backend
        self.migrations = {m.name: MigrationRule.from_config(m) for m in settings.migration_list}
        self.table = PrefixTable(
            Rule(m.name, m.match.prefix, None if m.match.methods is None else
                 frozenset(m.match.methods), self.migrations[m.name])
            for m in settings.migration_list
        )  # fmt: skip
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

    def set_weight(self, migration: str, weight: float) -> None:
        """Change a migration's weight; takes effect on the next request."""
        rule = self.migrations.get(migration)
        if rule is not None:
            rule.set_weight(weight)

    def set_phase(self, migration: str, phase: Phase) -> None:
        """Follow a migration's phase (its cohorts' rollback rule); on the next request."""
        rule = self.migrations.get(migration)
        if rule is not None:
            rule.rolled_back = phase == Phase.ROLLED_BACK

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

    def decide(
        self,
        path: str,
        method: str,
        headers: RawHeaders,
        client: tuple[str, int] | None,
        query: bytes = b"",
    ) -> Decision:
        """``query``: the raw query string, read only by a migration with query cohorts."""
        found = self.table.lookup(path, method)
        if found is None:
            migration, kind, sticky_name = None, "none", b""
        else:
            migration = found.value
            kind, sticky_name = migration.sticky_kind, migration.sticky_name
        override = sticky = None
        override_header = self.override_header
        # One loop per sticky kind: the header scan tests only what this request's key needs.
        if kind == "header":
            for name, value in headers:
                if name == override_header:
                    override = value
                elif name == sticky_name:
                    sticky = value
        elif kind == "cookie":
            for name, value in headers:
                if name == override_header:
                    override = value
                elif name == b"cookie" and sticky is None:
                    sticky = cookie_value(value, sticky_name)
        else:
            for name, value in headers:
                if name == override_header:
                    override = value

        set_cookie = None
        sent = sticky  # the client's own key (a users file lists those, never a fresh one)
        if kind == "cookie" and sticky is None:
            sticky = secrets.token_urlsafe(16).encode("ascii")
            set_cookie = sticky_name + b"=" + sticky + b"; Path=/; HttpOnly; SameSite=Lax"
        elif kind == "client_ip" and client is not None:
            sticky = client[0].encode("latin-1")

        rule = self.route_for(path) if self.rules else None
        if rule is None:
            route, deprecation, shadow = DEFAULT_ROUTE, True, None
        else:
            route, deprecation, shadow = rule.name, rule.deprecation, rule.shadow
        if migration is None:
            label = NO_MIGRATION
        else:
            label = migration.name
            if shadow is None:
                shadow = migration.shadow

        if override is not None and override in self.overrides and self.may_override(client):
            backend = self.overrides[override]
            return Decision(backend, route, "override", migration, label, deprecation,
                            set_cookie, shadow)  # fmt: skip
        if rule is not None and rule.pin is not None:
            return Decision(rule.pin, route, "pin", migration, NO_MIGRATION, deprecation,
                            set_cookie, shadow)  # fmt: skip
        if migration is None:
            return Decision(self.default_backend, route, "default", None, NO_MIGRATION,
                            deprecation, set_cookie, shadow)  # fmt: skip
        if migration.cohorts is not None:
            if kind == "client_ip":
                sent = sticky
            cohort = migration.cohorts.choose(headers, query, client, sent)
            if cohort is not None:
                backend = cohort.backend
                if backend == migration.target and migration.rolled_back:
                    backend = migration.target if cohort.survive_rollback else migration.source
                return Decision(backend, route, "cohort", migration, label, deprecation,
                                set_cookie, shadow, cohort=cohort.label)  # fmt: skip
        if rule is not None and rule.threshold is not None:
            limit, label = rule.threshold, NO_MIGRATION  # a static weight: not the rollout's
        else:
            limit = migration.threshold
        point = bucket(sticky) if sticky else random.random() * BUCKETS
        backend = migration.target if point < limit else migration.source
        return Decision(backend, route, "weight", migration, label, deprecation, set_cookie,
                        shadow)  # fmt: skip
