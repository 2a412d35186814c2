"""A migration's cohorts on the request path: each ``CohortConfig`` compiled once into a
matcher, and the first cohort a request belongs to.

The request is read only as far as some cohort needs: the query string is parsed (split on
``&``, each name and value percent-decoded once, RFC 3986 §2.1; ``+`` stays ``+``) only when a
cohort names a parameter, and then only the parameters some cohort names are kept. A name
given several times matches when any of its values does (``?v=1&v=2`` is in ``v: "2"``); so
does a header given on several lines, or a cookie given twice. Values compare as UTF-8
bytes; a regex is tried on the value decoded as UTF-8, and never matches one that is not
UTF-8 or is over ``MAX_SUBJECT`` bytes (a cap on the work a pattern can cause). The query itself is
forwarded as the client sent it: nothing here changes it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from cutover.config.cohorts import MAX_SUBJECT, CohortConfig, RegexConfig
from cutover.types import RawHeaders
from cutover.vocabulary import CohortKind

# An address as (4 or 16 bytes, its integer), a network as (bytes, network integer, mask):
# inet_pton and a mask are several times cheaper per request than ipaddress's objects.
Address = tuple[int, int]
Network = tuple[int, int, int]
_V4_MAPPED = bytes(10) + b"\xff\xff"
ValueMatcher = Callable[[bytes], bool]
Values = dict[bytes, list[bytes]]
NO_VALUES: Values = {}
ADDRESSES_KEPT = 4096  # client hosts whose parsed address a migration's cohorts keep


def value_matcher(value: str | RegexConfig) -> ValueMatcher:
    if isinstance(value, str):
        return value.encode("utf-8").__eq__
    fullmatch = re.compile(value.regex).fullmatch

    def matches(subject: bytes) -> bool:
        if len(subject) > MAX_SUBJECT:
            return False
        try:
            return fullmatch(subject.decode("utf-8")) is not None
        except UnicodeDecodeError:
            return False

    return matches


def query_values(query: bytes, wanted: frozenset[bytes]) -> Values:
    """The values of the ``wanted`` parameters in a raw query string, each decoded once."""
    found: Values = {}
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if b"%" in name:
            name = unquote_to_bytes(name)
        if name in wanted:
            if b"%" in value:
                value = unquote_to_bytes(value)
            found.setdefault(name, []).append(value)
    return found


def cookie_values(header: bytes, wanted: frozenset[bytes], found: Values) -> None:
    for pair in header.split(b";"):
        name, sep, value = pair.strip().partition(b"=")
        if sep and name in wanted:
            found.setdefault(name, []).append(value.strip().strip(b'"'))


def client_address(client: tuple[str, int] | None) -> Address | None:
    if client is None:
        return None
    host = client[0]
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except (OSError, ValueError):
        return None
    # A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d: it is in 10.0.0.0/8.
    if packed[:12] == _V4_MAPPED:
        packed = packed[12:]
    return len(packed), int.from_bytes(packed, "big")


def network(config: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Network:
    size = 4 if config.version == 4 else 16
    return size, int(config.network_address), int(config.netmask)


def in_networks(address: Address, networks: tuple[Network, ...]) -> bool:
    size, value = address
    return any(size == n_size and value & mask == net for n_size, net, mask in networks)


@dataclass(frozen=True, slots=True)
class Cohort:
    label: str  # its name, else its index: the ``cohort`` label of the metrics
    backend: str
    survive_rollback: bool
    kind: CohortKind
    matchers: tuple[tuple[bytes, ValueMatcher], ...] = ()  # query, header, cookie: all match
    networks: tuple[Network, ...] = ()
    users: frozenset[bytes] = frozenset()

    @classmethod
    def from_config(cls, config: CohortConfig, index: int) -> Cohort:
        kind = config.kind
        common = {"label": config.label(index), "backend": config.backend,
                  "survive_rollback": config.survive_rollback, "kind": kind}  # fmt: skip
        if kind == CohortKind.NETWORK:
            return cls(**common, networks=tuple(network(n) for n in config.network or ()))
        if kind == CohortKind.USERS_FILE:
            keys = config.users_file.keys if config.users_file is not None else ()
            return cls(**common, users=frozenset(key.encode("utf-8") for key in keys))
        mapping = getattr(config, kind) or {}
        # Header names are case-insensitive (ASGI lowercases them); query and cookie names not.
        names = [name.lower() if kind == CohortKind.HEADER else name for name in mapping]
        matchers = tuple(
            (name.encode("utf-8"), value_matcher(value))
            for name, value in zip(names, mapping.values(), strict=True)
        )
        return cls(**common, matchers=matchers)

    def names(self) -> Iterable[bytes]:
        return (name for name, _ in self.matchers)

    def matches(self, request: CohortRequest) -> bool:
        kind = self.kind
        if kind == CohortKind.NETWORK:
            address = request.address
            return address is not None and in_networks(address, self.networks)
        if kind == CohortKind.USERS_FILE:
            return request.sticky is not None and request.sticky in self.users
        found = request.query if kind == CohortKind.QUERY else (
            request.headers if kind == CohortKind.HEADER else request.cookies
        )  # fmt: skip
        return all(any(map(match, found.get(name, ()))) for name, match in self.matchers)


@dataclass(slots=True)
class CohortRequest:
    """What the cohorts of one migration read of one request."""

    query: Values
    headers: Values
    cookies: Values
    address: Address | None
    sticky: bytes | None


# Where choose() finds what a cohort of each kind tests: the values of its query, header and
# cookie names, the client's address, the sticky key.
_NETWORK, _USERS = -1, -2
_SOURCE = {CohortKind.QUERY: 0, CohortKind.HEADER: 1, CohortKind.COOKIE: 2,
           CohortKind.NETWORK: _NETWORK, CohortKind.USERS_FILE: _USERS}  # fmt: skip


def tested(cohort: Cohort) -> tuple[Network, ...] | frozenset[bytes] | tuple[object, ...]:
    """What choose() tests a request against: a cohort's networks, users or matchers."""
    if cohort.kind == CohortKind.NETWORK:
        return cohort.networks
    return cohort.users if cohort.kind == CohortKind.USERS_FILE else cohort.matchers


class Cohorts:
    """A migration's cohorts, in config order, and what of a request they read."""

    def __init__(self, configs: list[CohortConfig]) -> None:
        self.cohorts = tuple(Cohort.from_config(c, i) for i, c in enumerate(configs))

        def names(kind: CohortKind) -> frozenset[bytes]:
            return frozenset(n for c in self.cohorts if c.kind == kind for n in c.names())

        self.query_names = names(CohortKind.QUERY)
        self.header_names = names(CohortKind.HEADER)
        self.cookie_names = names(CohortKind.COOKIE)
        self.reads_address = any(c.kind == CohortKind.NETWORK for c in self.cohorts)
        # The header names the scan stops at: one set probe for every other header.
        self._watched = self.header_names | ({b"cookie"} if self.cookie_names else set())
        # Each cohort as (cohort, where its values are, its test): choose() does what
        # Cohort.matches does, without an enum or a request object per request.
        self._plan = tuple((c, _SOURCE[c.kind], tested(c)) for c in self.cohorts)
        self._addresses: dict[str, Address | None] = {}  # by client host: parsed once

    def address(self, client: tuple[str, int] | None) -> Address | None:
        """``client_address(client)``, remembered for the last ``ADDRESSES_KEPT`` hosts."""
        if client is None:
            return None
        host = client[0]
        addresses = self._addresses
        try:
            return addresses[host]
        except KeyError:
            pass
        if len(addresses) >= ADDRESSES_KEPT:
            addresses.clear()
        address = addresses[host] = client_address(client)
        return address

    def choose(
        self,
        headers: RawHeaders,
        query: bytes,
        client: tuple[str, int] | None,
        sticky: bytes | None,
    ) -> Cohort | None:
        """The first cohort the request is in (None: the weight decides)."""
        found_headers: Values | None = None
        cookies: Values | None = None
        header_names, cookie_names, watched = self.header_names, self.cookie_names, self._watched
        if watched:
            for name, value in headers:
                if name not in watched:
                    continue
                if name in header_names:
                    if found_headers is None:
                        found_headers = {}
                    found_headers.setdefault(name, []).append(value)
                if cookie_names and name == b"cookie":
                    if cookies is None:
                        cookies = {}
                    cookie_values(value, cookie_names, cookies)
        query_found = query_values(query, self.query_names) if self.query_names and query else None
        address = self.address(client) if self.reads_address else None
        found_by_source = (query_found, found_headers, cookies)
        for cohort, source, test in self._plan:
            if source == _NETWORK:
                if address is not None:
                    size, value = address
                    for n_size, net, mask in test:
                        if size == n_size and value & mask == net:
                            return cohort
            elif source == _USERS:
                if sticky is not None and sticky in test:
                    return cohort
            else:
                found = found_by_source[source]
                if found is None:  # none of its names in the request: only no names matches
                    if not test:
                        return cohort
                    continue
                for name, match in test:  # every name has a value that matches
                    values = found.get(name)
                    if not values or not any(map(match, values)):
                        break
                else:
                    return cohort
        return None
