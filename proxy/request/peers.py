"""Who the client is when Cutover sits behind load balancers (``listen.trusted_proxies``).

A request whose TCP peer is in one of the trusted networks names its client in the
forwarding header that peer wrote: X-Forwarded-For, or RFC 7239 Forwarded under
``forwarded.header: rfc7239`` (``both``: Forwarded when the peer sent one, else
X-Forwarded-For). The chain is walked from the right, past trusted hops; the client is the
first hop that is not trusted. Where the chain stops making sense (a value that is not an
address: garbage, ``unknown``, an obfuscated name; more than ``MAX_HOPS`` hops), the last
address reached is the client, so a value the client wrote itself is never believed. A peer
outside the networks is the client, whatever its headers say.

Resolved once per request by the app: ``scope["client"]`` becomes the client, and the peer
is kept under ``TRUSTED_PEER`` (its presence tells the header rebuild that the request came
through a trusted proxy, whose X-Forwarded-* and Forwarded are then kept)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from cutover.request.cohorts import client_address, in_networks, network
from cutover.request.forwarded import (
    forwarded_for_nodes,
    joined,
    parse_node,
    x_forwarded_for_nodes,
)
from cutover.types import RawHeaders, Scope
from cutover.vocabulary import ForwardedHeader

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Client = tuple[str, int]

TRUSTED_PEER = "cutover.trusted_peer"  # the scope key of a trusted peer's own (host, port)
_PEERS_CACHED = 4096  # distinct peer addresses whose trust is remembered


class TrustedProxies:
    def __init__(self, networks: list[Network], header: ForwardedHeader) -> None:
        self.networks = tuple(network(n) for n in networks)  # as ints: a mask and a compare
        self.header = header
        self.trusted_host = lru_cache(maxsize=_PEERS_CACHED)(self.trusts)

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (an address; a dual-stack socket's ::ffff:a.b.c.d is a.b.c.d)
        is in a trusted network."""
        address = client_address((host, 0))
        return address is not None and in_networks(address, self.networks)

    def resolve(self, scope: Scope) -> None:
        """From a trusted peer: ``scope["client"]`` the client its headers name, the peer
        under ``TRUSTED_PEER``. Anything else is left as it is, and so is a scope resolved
        already (the fast path resolves a request it may then leave to the full path)."""
        if TRUSTED_PEER in scope:
            return
        peer = scope.get("client")
        if peer is None or not self.trusted_host(peer[0]):
            return
        scope[TRUSTED_PEER] = peer
        scope["client"] = self.client(peer, scope["headers"])

    def client(self, peer: Client, headers: RawHeaders) -> Client:
        """The first untrusted hop of the chain the trusted ``peer`` sent, from the right."""
        nodes = None
        if self.header != ForwardedHeader.X_FORWARDED:
            value = joined(headers, b"forwarded")
            if value is not None:
                nodes = forwarded_for_nodes(value)
        if nodes is None and self.header != ForwardedHeader.RFC7239:
            value = joined(headers, b"x-forwarded-for")
            if value is not None:
                nodes = x_forwarded_for_nodes(value)
        client = peer
        for node in nodes or ():
            parsed = None if node is None else parse_node(node)
            if parsed is None:
                break
            client = parsed
            if not self.trusts(parsed[0]):
                break
        return client


def trusted_proxies(networks: list[Network], header: ForwardedHeader) -> TrustedProxies | None:
    """None when no proxy is trusted: then the request path does nothing at all."""
    return TrustedProxies(networks, header) if networks else None
