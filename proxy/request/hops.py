"""What the forwarder's headers depend on beyond the request: who the peer is (a trusted
proxy or the client), which forwarding vocabulary goes upstream (``forwarded.header``),
which backends get the client's Host (``preserve_host``) and whose Location headers are
rewritten (``rewrite_location``). Built once per config, with the forwarder."""

from __future__ import annotations

from cutover.config import Settings
from cutover.request.headers import (
    client_response_headers,
    upstream_request_headers,
    with_client_host,
)
from cutover.request.locations import LocationRewriter
from cutover.request.peers import TRUSTED_PEER, TrustedProxies, trusted_proxies
from cutover.types import RawHeaders, Scope


class Hops:
    def __init__(self, settings: Settings) -> None:
        self.forwarded = settings.forwarded.header
        self.peers: TrustedProxies | None = trusted_proxies(
            settings.listen.trusted_proxies, self.forwarded
        )
        backends = settings.backends.items()
        self.preserve_host = frozenset(name for name, b in backends if b.preserve_host)
        self.locations = {
            name: LocationRewriter(b.url) for name, b in backends if b.rewrite_location
        }

    def request_headers(self, scope: Scope) -> RawHeaders:
        """The headers for any backend (BadRequest if the Host makes it unforwardable)."""
        peer = scope.get(TRUSTED_PEER)
        trusted = peer is not None
        if not trusted:
            peer = scope.get("client")
        return upstream_request_headers(
            scope["headers"],
            client_host=peer[0] if peer else None,
            scheme=scope.get("scheme", "http"),
            http_version=scope.get("http_version", "1.1"),
            trusted=trusted,
            forwarded=self.forwarded,
        )

    def for_backend(self, backend: str, headers: RawHeaders, scope: Scope) -> RawHeaders:
        if backend in self.preserve_host:
            return with_client_host(headers, scope)
        return headers

    def response_headers(
        self, backend: str, raw: RawHeaders, extra: RawHeaders, scope: Scope
    ) -> RawHeaders:
        return client_response_headers(raw, extra, self.locations.get(backend), scope)
