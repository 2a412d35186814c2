"""``Location`` and ``Content-Location`` rewriting (``backends.*.rewrite_location``), as
nginx's default ``proxy_redirect`` does it: an absolute URL on the backend's own origin,
under its base path when its URL has one, is made an URL on the origin the client used
(the listener's scheme, the client's Host), the base path taken off as the proxy adds it
going up. Relative references and every other origin are left as they are, and so is a
response to a request without a Host (there is no origin to point at)."""

from __future__ import annotations

from urllib.parse import urlsplit

from cutover.types import Scope

LOCATION_HEADERS = frozenset({b"location", b"content-location"})
# What may follow the origin and base path in a URL that is under them.
_BOUNDARY = (b"/", b"?", b"#")


class LocationRewriter:
    """One backend's origin and base path, and how its URLs map to the client's."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host  # urlsplit drops an IPv6's brackets
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default
        origin = f"{parts.scheme}://{host}".lower().encode("idna")
        # http://host and http://host:80 are one origin (RFC 9110 §4.3.1).
        self.origins = (origin + b":%d" % port, origin) if port == default else (
            origin + b":%d" % port,
        )  # fmt: skip
        self.base = parts.path.rstrip("/").encode("latin-1")

    def rewrite(self, value: bytes, scope: Scope) -> bytes:
        for origin in self.origins:
            if value[: len(origin)].lower() == origin:
                rest = value[len(origin) :]
                break
        else:
            return value
        base = self.base
        if base:
            if not rest.startswith(base):
                return value
            rest = rest[len(base) :]
        if rest and not rest.startswith(_BOUNDARY):
            return value  # another port (:8080 after :80), another host, another path
        client = client_origin(scope)
        if client is None:
            return value
        return client + (rest if rest.startswith(b"/") else b"/" + rest)


def client_origin(scope: Scope) -> bytes | None:
    """``scheme://Host`` of the request as the client sent it (https under listen.tls)."""
    for name, value in scope["headers"]:
        if name == b"host":
            return scope.get("scheme", "http").encode("latin-1") + b"://" + value
    return None
