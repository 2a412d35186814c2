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

from cutover.request.forwarded import (
    Address,
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
        self.networks = tuple(networks)
        self.header = header
        self.trusted_host = lru_cache(maxsize=_PEERS_CACHED)(self._trusted_host)

    def trusts(self, address: Address) -> bool:
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        return any(address in network for network in self.networks)

    def _trusted_host(self, host: str) -> bool:
        try:
            return self.trusts(ipaddress.ip_address(host))
        except ValueError:
            return False

    def resolve(self, scope: Scope) -> None:
        """From a trusted peer: ``scope["client"]`` the client its headers name, the peer
        under ``TRUSTED_PEER``. Anything else is left as it is."""
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
            address, port = parsed
            client = (str(address), port)
            if not self.trusts(address):
                break
        return client


def trusted_proxies(networks: list[Network], header: ForwardedHeader) -> TrustedProxies | None:
    """None when no proxy is trusted: then the request path does nothing at all."""
    return TrustedProxies(networks, header) if networks else None
