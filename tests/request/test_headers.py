from __future__ import annotations

import re

import pytest

from cutover.request.body import BadRequest
from cutover.request.headers import (
    client_response_headers,
    header_value,
    upstream_request_headers,
)


def decoded(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def forward(headers: list[tuple[bytes, bytes]], **kw) -> list[tuple[str, str]]:
    options = {"client_host": "10.1.1.1", "scheme": "https", "http_version": "1.1"} | kw
    if not any(name == b"host" for name, _ in headers):
        headers = [(b"host", b"shop.example"), *headers]
    return decoded(upstream_request_headers(headers, **options))


def names(headers) -> list:
    return [name for name, _ in headers]


def test_request_hop_by_hop_headers_are_removed() -> None:
    out = forward(
        [
            (b"connection", b"keep-alive, X-Private"),
            (b"x-private", b"secret"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-connection", b"keep-alive"),
            (b"te", b"trailers"),
            (b"trailer", b"x-checksum"),
            (b"transfer-encoding", b"chunked"),
            (b"upgrade", b"websocket"),
            (b"proxy-authorization", b"Basic Zm9v"),
            (b"proxy-authenticate", b"Basic"),
            (b"x-kept", b"1"),
        ]
    )
    kept = {name for name, _ in out}
    assert "x-kept" in kept
    for hop in (
        "connection",
        "x-private",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    ):
        assert hop not in kept


def test_forwarded_headers() -> None:
    out = dict(
        forward(
            [
                (b"host", b"shop.example"),
                (b"x-forwarded-for", b"1.2.3.4"),
                (b"x-forwarded-for", b"5.6.7.8"),
                (b"x-forwarded-proto", b"gopher"),
                (b"x-forwarded-host", b"evil.example"),
                (b"via", b"1.0 edge"),
            ]
        )
    )
    assert out["x-forwarded-for"] == "1.2.3.4, 5.6.7.8, 10.1.1.1"
    assert out["x-forwarded-proto"] == "https"
    assert out["x-forwarded-host"] == "shop.example"
    assert out["via"] == "1.0 edge, 1.1 cutover"
    assert "host" not in out


@pytest.mark.parametrize(
    ("hosts", "version", "problem"),
    [
        ([b"a.example", b"b.example"], "1.1", "more than one Host header"),
        ([], "1.1", "no Host header"),
        ([b"evil.example/reset?"], "1.1", "not a host[:port]"),
        ([b"a.example:99999999"], "1.1", "not a host[:port]"),
    ],
)
def test_unforwardable_hosts(hosts, version, problem) -> None:
    with pytest.raises(BadRequest, match=re.escape(problem)):
        upstream_request_headers(
            [(b"host", h) for h in hosts], client_host=None, scheme="http", http_version=version
        )


@pytest.mark.parametrize("host", [b"a.example", b"a.example:8080", b"[::1]:80", b"10.0.0.1", b""])
def test_forwardable_hosts(host) -> None:
    out = dict(decoded(upstream_request_headers([(b"host", host)], client_host=None,
                                                scheme="http", http_version="1.1")))  # fmt: skip
    assert out.get("x-forwarded-host", "") == host.decode()


def test_http_1_0_needs_no_host() -> None:
    assert upstream_request_headers([], client_host=None, scheme="http", http_version="1.0")


def test_forwarded_for_without_client() -> None:
    out = dict(forward([], client_host=None, http_version="2"))
    assert "x-forwarded-for" not in out
    assert out["via"] == "2 cutover"


def test_repeated_end_to_end_headers_keep_order_and_multiplicity() -> None:
    out = forward([(b"accept", b"a"), (b"x-multi", b"1"), (b"x-multi", b"2")])
    assert [pair for pair in out if pair[0] == "x-multi"] == [("x-multi", "1"), ("x-multi", "2")]


def test_response_headers() -> None:
    raw = [
        (b"Content-Type", b"application/json"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"Connection", b"close, X-Hop"),
        (b"X-Hop", b"1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Cutover-Backend", b"spoofed"),
        (b"Content-Encoding", b"gzip"),
    ]
    out = client_response_headers(raw, [(b"x-cutover-backend", b"new")])
    assert out == [
        (b"content-type", b"application/json"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-encoding", b"gzip"),
        (b"via", b"1.1 cutover"),
        (b"x-cutover-backend", b"new"),
    ]


def test_header_value_is_the_first_match_of_any_case() -> None:
    raw = [(b"Content-Type", b"text/plain"), (b"content-type", b"text/html")]
    assert header_value(raw, b"content-type") == "text/plain"
    assert header_value(raw, b"content-length") is None
