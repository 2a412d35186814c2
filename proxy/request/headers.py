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
# Every request header the scan does more with than pass on.
_REQUEST_READ = _REQUEST_DROPPED | {b"x-forwarded-for", b"forwarded", b"via"}
_RFC7239, _X_FORWARDED = ForwardedHeader.RFC7239, ForwardedHeader.X_FORWARDED

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


_VALID_HOSTS: set[bytes] = set()  # Host values that matched _HOST_RE: a few, sent often
_VALID_HOSTS_KEPT = 1024


def valid_host(host: bytes) -> bool:
    """Whether a Host value is a host[:port] (``host_problem``'s test), remembered."""
    if host in _VALID_HOSTS:
        return True
    if not _HOST_RE.match(host):
        return False
    if len(host) <= 255:  # a DNS name's most, and a port: longer ones are not kept
        if len(_VALID_HOSTS) >= _VALID_HOSTS_KEPT:
            _VALID_HOSTS.clear()
        _VALID_HOSTS.add(host)
    return True


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
    dropped, read = _REQUEST_DROPPED, _REQUEST_READ
    while True:
        out: RawHeaders = []
        append = out.append
        hosts: list[bytes] = []
        forwarded_for = via = chain = None
        kept: dict[bytes, bytes] = {}
        connection: list[bytes] = []
        for item in headers:
            name = item[0]
            if name not in read:  # most headers: passed on as they are
                append(item)
                continue
            value = item[1]
            if name in dropped:
                if name == b"host":
                    hosts.append(value)
                elif name == b"connection":
                    connection.append(value)
                elif trusted and name in _TRUSTED_KEPT:
                    kept.setdefault(name, value)
            elif name == b"x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            elif name == b"forwarded":
                chain = value if chain is None else chain + b", " + value
            elif name == b"via":
                via = value if via is None else via + b", " + value
        if connection and dropped is _REQUEST_DROPPED:
            # What the client's Connection names is dropped too: the scan again, without them.
            named = connection_tokens([(b"connection", v) for v in connection]) - dropped
            if named:
                dropped, read = dropped | named, read | named
                continue
        break
    if len(hosts) == 1 and valid_host(hosts[0]):
        host: bytes | None = hosts[0]
    else:
        problem = host_problem(hosts, http_version)
        if problem is not None:
            raise BadRequest(problem)
        host = hosts[0] if hosts else None
    if forwarded != _RFC7239:
        if client_host is not None:
            client = client_host.encode("latin-1")
            forwarded_for = client if forwarded_for is None else forwarded_for + b", " + client
        if forwarded_for is not None:
            out.append((b"x-forwarded-for", forwarded_for))
        proto = kept.get(b"x-forwarded-proto") if kept else None
        out.append((b"x-forwarded-proto", proto if proto is not None else scheme.encode()))
        host_seen = kept.get(b"x-forwarded-host", host) if kept else host
        if host_seen is not None:
            out.append((b"x-forwarded-host", host_seen))
    if forwarded != _X_FORWARDED:
        element = forwarded_element(client_host, scheme, host)
        out.append((b"forwarded", chain + b", " + element if trusted and chain else element))
    hop = _VIA.get(http_version) or via_value(http_version)
    out.append((b"via", hop if via is None else via + b", " + hop))
    return out


_VIA = {version: via_value(version) for version in ("1.0", "1.1")}
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
    named: set[bytes] = set()
    out: RawHeaders = []
    append = out.append
    for name, value in raw:
        name = name.lower()
        if name in dropped:
            # Usually just "keep-alive" or "close"; anything else it names is hop-by-hop too.
            if name == b"connection" and value.strip().lower() not in _CONNECTION_OPTIONS:
                named.update(token.strip().lower() for token in value.split(b","))
            continue
        if locations is not None and name in LOCATION_HEADERS:
            value = locations.rewrite(value, scope)  # type: ignore[arg-type]
        append((name, value))
    named -= _CONNECTION_OPTIONS
    if named:  # it may name a field that came before it
        out = [(name, value) for name, value in out if name not in named]
    out.append((b"via", _RESPONSE_VIA))
    out += extra
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
