"""RFC 9110 proxy header rules: hop-by-hop removal, ``Via``, ``X-Forwarded-*`` and RFC 7239
``Forwarded``, the client's Host for a backend that preserves it."""

from __future__ import annotations

import re

from cutover.request.body import BadRequest
from cutover.request.forwarded import forwarded_element
from cutover.request.locations import LOCATION_HEADERS, LocationRewriter
from cutover.request.request_id import REQUEST_ID_HEADER
from cutover.types import RawHeaders, Scope
from cutover.vocabulary import ForwardedHeader

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",  # belongs to an h2c Upgrade (RFC 7540 §3.2.1)
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# Not hop-by-hop by definition, but the proxy re-derives them for the next hop:
# Host comes from the backend URL, Expect was answered by the server already.
_REQUEST_DROPPED = HOP_BY_HOP | {b"host", b"expect", b"x-forwarded-proto", b"x-forwarded-host"}
_TRUSTED_KEPT = frozenset({b"x-forwarded-proto", b"x-forwarded-host"})  # a trusted peer's

PSEUDONYM = b"cutover"
BACKEND_HEADER = b"x-cutover-backend"
# The request's own id is stamped on every answer (request_id.py): a backend's echo of it
# would make two.
_RESPONSE_DROPPED = HOP_BY_HOP | {BACKEND_HEADER, REQUEST_ID_HEADER}


# RFC 9112 §3.2 / RFC 3986: uri-host [ ":" port ] (an IP literal, or a reg-name).
_HOST_RE = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]{0,5})?$")


def host_problem(hosts: list[bytes], http_version: str) -> str | None:
    """Why the request's Host headers make it unforwardable, or None (RFC 9112 §3.2)."""
    if len(hosts) > 1:
        return "more than one Host header"
    if not hosts:
        return "no Host header" if http_version == "1.1" else None
    if not _HOST_RE.match(hosts[0]):
        return "the Host header is not a host[:port]"
    return None


def connection_tokens(headers: RawHeaders) -> frozenset[bytes]:
    """Header names listed in ``Connection`` (RFC 9110 §7.6.1): also hop-by-hop."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    return frozenset(tokens)


def via_value(http_version: str) -> bytes:
    return http_version.encode("latin-1") + b" " + PSEUDONYM


def upstream_request_headers(
    headers: RawHeaders,
    *,
    client_host: str | None,
    scheme: str,
    http_version: str,
    trusted: bool = False,
    forwarded: ForwardedHeader = ForwardedHeader.X_FORWARDED,
) -> RawHeaders:
    """The headers to send upstream for a client request's (lowercased ASGI) headers;
    BadRequest if its Host headers make it unforwardable. ``client_host``: the TCP peer,
    ``trusted`` when it is one of ``listen.trusted_proxies``.

    X-Forwarded-For is appended to (from any peer: its last entry is always true). From a
    trusted peer its X-Forwarded-Proto/-Host are kept and its Forwarded is appended to;
    from any other peer they are Cutover's own, and its Forwarded is replaced. The
    vocabulary ``forwarded`` does not name is not sent at all."""
    dropped = _REQUEST_DROPPED
    if any(name == b"connection" for name, _ in headers):
        dropped = dropped | connection_tokens(headers)
    out: RawHeaders = []
    hosts: list[bytes] = []
    forwarded_for = via = chain = None
    kept: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in dropped:
            if name == b"host":
                hosts.append(value)
            elif trusted and name in _TRUSTED_KEPT:
                kept.setdefault(name, value)
            continue
        if name == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        if name == b"forwarded":
            chain = value if chain is None else chain + b", " + value
            continue
        if name == b"via":
            via = value if via is None else via + b", " + value
            continue
        out.append((name, value))

    problem = host_problem(hosts, http_version)
    if problem is not None:
        raise BadRequest(problem)
    host = hosts[0] if hosts else None
    if forwarded != ForwardedHeader.RFC7239:
        if client_host is not None:
            client = client_host.encode("latin-1")
            forwarded_for = client if forwarded_for is None else forwarded_for + b", " + client
        if forwarded_for is not None:
            out.append((b"x-forwarded-for", forwarded_for))
        out.append((b"x-forwarded-proto", kept.get(b"x-forwarded-proto", scheme.encode())))
        host_seen = kept.get(b"x-forwarded-host", host)
        if host_seen is not None:
            out.append((b"x-forwarded-host", host_seen))
    if forwarded != ForwardedHeader.X_FORWARDED:
        element = forwarded_element(client_host, scheme, host)
        out.append((b"forwarded", chain + b", " + element if trusted and chain else element))
    hop = via_value(http_version)
    out.append((b"via", hop if via is None else via + b", " + hop))
    return out


_RESPONSE_VIA = via_value("1.1")
_CONNECTION_OPTIONS = frozenset({b"keep-alive", b"close", b""})


def client_response_headers(
    raw: RawHeaders,
    extra: RawHeaders,
    locations: LocationRewriter | None = None,
    scope: Scope | None = None,
) -> RawHeaders:
    """An upstream response's headers for the client: lowercased, hop-by-hop removed,
    ``Via`` appended, then ``extra`` (backend name, deprecation, cookies) added; with
    ``locations`` (and the request's ``scope``), Location and Content-Location rewritten."""
    dropped = _RESPONSE_DROPPED
    out: RawHeaders = []
    for name, value in raw:
        name = name.lower()
        if name == b"connection":
            # Usually just "keep-alive" or "close"; anything else it names is hop-by-hop too.
            named = {token.strip().lower() for token in value.split(b",")} - _CONNECTION_OPTIONS
            if named:
                dropped = dropped | named
        elif locations is not None and name in LOCATION_HEADERS:
            value = locations.rewrite(value, scope)  # type: ignore[arg-type]
        out.append((name, value))
    out = [(name, value) for name, value in out if name not in dropped]
    out.append((b"via", _RESPONSE_VIA))
    out.extend(extra)
    return out


def header_value(headers: RawHeaders, name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase) in raw headers of any case."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def with_client_host(headers: RawHeaders, scope: Scope) -> RawHeaders:
    """``headers`` led by the client's Host (``backends.*.preserve_host``); the upstream
    client sends a leading ``host`` instead of its own. Without one, as they are."""
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    return headers if host is None else [(b"host", host), *headers]
