"""The URL a client request is sent to on a backend."""

from __future__ import annotations

from cutover.types import Scope


def target_url(base_url: str, scope: Scope) -> str:
    """``base_url`` plus the request's path and query as the client sent them (raw, so
    percent-encoding survives the hop)."""
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    url = base_url + raw_path.decode("latin-1")
    query = scope.get("query_string", b"")
    return url + "?" + query.decode("latin-1") if query else url
