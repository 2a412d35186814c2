"""The requests the proxy refuses before routing them, whatever the config says."""

from __future__ import annotations

from cutover.types import Scope

ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
REFUSAL_TITLES = {400: "Bad Request", 405: "Method Not Allowed", 426: "Upgrade Required"}


def refuse(scope: Scope) -> tuple[int, str] | None:
    """(status, reason) for a request the proxy will not forward, else None."""
    method = scope["method"]
    if method in ("CONNECT", "TRACE"):
        # CONNECT would open a tunnel past every rule here; TRACE reflects the request,
        # cookies and forwarding headers included (RFC 9110 §9.3.6, §9.3.8).
        return 405, f"{method} is not forwarded by this proxy"
    version = scope.get("http_version", "1.1")
    if version != "1.1" and version != "1.0":
        # httptools also parses HTTP/0.9 and HTTP/2.0 request lines: neither can be forwarded.
        # 400 rather than 505: a refusal here is always a 4xx (or 501), as everywhere else.
        return 400, f"HTTP/{version} is not supported; send HTTP/1.1 or HTTP/1.0"
    raw_path = scope.get("raw_path") or scope["path"].encode("latin-1", "replace")
    if not raw_path.startswith(b"/"):
        return 400, "the request target must be a path (origin-form)"
    return None  # Host is checked where the headers are read: headers.upstream_request_headers
