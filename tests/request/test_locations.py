"""Location rewriting: the backend's own origin (and base path) becomes the client's."""

from __future__ import annotations

import pytest

from cutover.request.headers import client_response_headers
from cutover.request.locations import LocationRewriter, client_origin


def scope(host: bytes | None = b"gw.example:8080", scheme: str = "http") -> dict:
    headers = [] if host is None else [(b"host", host)]
    return {"type": "http", "scheme": scheme, "headers": [(b"accept", b"*/*"), *headers]}


@pytest.mark.parametrize(
    ("backend", "location", "rewritten"),
    [
        ("http://127.0.0.1:8002", b"http://127.0.0.1:8002/get", b"http://gw.example:8080/get"),
        ("http://127.0.0.1:8002", b"HTTP://127.0.0.1:8002/Get?a=1", b"http://gw.example:8080/Get?a=1"),
        ("http://127.0.0.1:8002", b"http://127.0.0.1:8002", b"http://gw.example:8080/"),
        ("http://127.0.0.1:8002", b"http://127.0.0.1:8002?x", b"http://gw.example:8080/?x"),
        ("http://legacy.internal", b"http://legacy.internal:80/a", b"http://gw.example:8080/a"),
        ("http://legacy.internal:80", b"http://legacy.internal/a", b"http://gw.example:8080/a"),
        ("https://legacy.internal", b"https://legacy.internal:443/a#f", b"http://gw.example:8080/a#f"),
        ("http://[::1]:8002", b"http://[::1]:8002/x", b"http://gw.example:8080/x"),
        ("http://b.internal/api/v1", b"http://b.internal/api/v1/users/7", b"http://gw.example:8080/users/7"),
        ("http://b.internal/api/v1", b"http://b.internal/api/v1", b"http://gw.example:8080/"),
        ("http://user:pw@b.internal", b"http://b.internal/x", b"http://gw.example:8080/x"),
    ],
)  # fmt: skip
def test_the_backends_own_urls_point_at_the_client_origin(
    backend: str, location: bytes, rewritten: bytes
) -> None:
    assert LocationRewriter(backend).rewrite(location, scope()) == rewritten


@pytest.mark.parametrize(
    ("backend", "location"),
    [
        ("http://127.0.0.1:8002", b"/get"),  # relative: the client resolves it on its origin
        ("http://127.0.0.1:8002", b"get?x=1"),
        ("http://127.0.0.1:8002", b"//127.0.0.1:8002/get"),  # network-path: left alone too
        ("http://127.0.0.1:8002", b"http://127.0.0.1:80021/get"),  # another port
        ("http://127.0.0.1:80", b"http://127.0.0.1:8080/get"),
        ("http://127.0.0.1:8002", b"https://127.0.0.1:8002/get"),  # another scheme
        ("http://127.0.0.1:8002", b"http://127.0.0.1.evil.example:8002/get"),
        ("http://127.0.0.1:8002", b"http://other.example/get"),
        ("http://b.internal/api", b"http://b.internal/apixyz"),  # not under the base path
        ("http://b.internal/api", b"http://b.internal/other"),
        ("http://127.0.0.1:8002", b""),
    ],
)
def test_other_origins_and_relative_references_are_left_alone(
    backend: str, location: bytes
) -> None:
    assert LocationRewriter(backend).rewrite(location, scope()) == location


def test_the_client_origin_is_the_listeners_scheme_and_the_clients_host() -> None:
    assert client_origin(scope(scheme="https")) == b"https://gw.example:8080"
    rewriter = LocationRewriter("http://127.0.0.1:8002")
    assert rewriter.rewrite(b"http://127.0.0.1:8002/a", scope(b"[::1]:9", "https")) == (
        b"https://[::1]:9/a"
    )


def test_without_a_host_there_is_no_origin_to_point_at() -> None:
    rewriter = LocationRewriter("http://127.0.0.1:8002")
    assert rewriter.rewrite(b"http://127.0.0.1:8002/a", scope(None)) == b"http://127.0.0.1:8002/a"


def test_the_response_rebuild_rewrites_location_and_content_location_only() -> None:
    raw = [
        (b"Location", b"http://127.0.0.1:8002/next"),
        (b"Content-Location", b"http://127.0.0.1:8002/doc/1"),
        (b"Link", b"<http://127.0.0.1:8002/x>; rel=next"),
        (b"Refresh", b"0; url=http://127.0.0.1:8002/x"),
    ]
    rewriter = LocationRewriter("http://127.0.0.1:8002")
    out = dict(client_response_headers(raw, [], rewriter, scope()))
    assert out[b"location"] == b"http://gw.example:8080/next"
    assert out[b"content-location"] == b"http://gw.example:8080/doc/1"
    assert out[b"link"] == b"<http://127.0.0.1:8002/x>; rel=next"
    assert out[b"refresh"] == b"0; url=http://127.0.0.1:8002/x"
    assert dict(client_response_headers(raw, []))[b"location"] == b"http://127.0.0.1:8002/next"
