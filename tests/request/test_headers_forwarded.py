"""What goes upstream of the forwarding headers, by ``forwarded.header`` and by whether the
peer is a trusted proxy; the client's Host for a backend that preserves it."""

from __future__ import annotations

import pytest

from cutover.request.headers import upstream_request_headers, with_client_host
from cutover.vocabulary import ForwardedHeader

X, RFC, BOTH = ForwardedHeader.X_FORWARDED, ForwardedHeader.RFC7239, ForwardedHeader.BOTH
INCOMING = [
    (b"host", b"shop.example"),
    (b"x-forwarded-for", b"6.6.6.6"),
    (b"x-forwarded-proto", b"https"),
    (b"x-forwarded-host", b"public.example"),
    (b"forwarded", b"for=6.6.6.6;proto=https"),
    (b"accept", b"*/*"),
]


def sent(mode: ForwardedHeader, *, trusted: bool = False, peer: str | None = "10.0.0.1",
         headers=INCOMING, scheme: str = "http") -> dict[bytes, list[bytes]]:  # fmt: skip
    out: dict[bytes, list[bytes]] = {}
    for name, value in upstream_request_headers(
        headers, client_host=peer, scheme=scheme, http_version="1.1", trusted=trusted,
        forwarded=mode,
    ):  # fmt: skip
        out.setdefault(name, []).append(value)
    return out


def test_x_forwarded_from_an_untrusted_peer_is_todays_rule_and_forwarded_is_dropped() -> None:
    out = sent(X)
    assert out[b"x-forwarded-for"] == [b"6.6.6.6, 10.0.0.1"]  # appended: its end is true
    assert out[b"x-forwarded-proto"] == [b"http"]
    assert out[b"x-forwarded-host"] == [b"shop.example"]
    assert b"forwarded" not in out  # a client's claim Cutover does not vouch for
    assert out[b"accept"] == [b"*/*"]


def test_x_forwarded_from_a_trusted_peer_keeps_its_proto_and_host() -> None:
    out = sent(X, trusted=True)
    assert out[b"x-forwarded-for"] == [b"6.6.6.6, 10.0.0.1"]
    assert out[b"x-forwarded-proto"] == [b"https"]
    assert out[b"x-forwarded-host"] == [b"public.example"]
    assert b"forwarded" not in out
    only_host = [(b"host", b"shop.example")]
    derived = sent(X, trusted=True, headers=only_host)
    assert (derived[b"x-forwarded-proto"], derived[b"x-forwarded-host"]) == (
        [b"http"], [b"shop.example"],
    )  # fmt: skip


def test_rfc7239_from_an_untrusted_peer_replaces_forwarded_and_sends_no_x_forwarded() -> None:
    out = sent(RFC, scheme="https")
    assert out[b"forwarded"] == [b"for=10.0.0.1;proto=https;host=shop.example"]
    for name in (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"):
        assert name not in out


def test_rfc7239_from_a_trusted_peer_appends_to_its_forwarded() -> None:
    headers = [*INCOMING, (b"forwarded", b'for="[2001:db8::7]"')]
    out = sent(RFC, trusted=True, headers=headers)
    assert out[b"forwarded"] == [
        b'for=6.6.6.6;proto=https, for="[2001:db8::7]", for=10.0.0.1;proto=http;host=shop.example'
    ]


def test_an_ipv6_peer_is_quoted_and_bracketed() -> None:
    out = sent(RFC, peer="2001:db8::1", headers=[(b"host", b"[2001:db8::2]:8080")])
    assert out[b"forwarded"] == [b'for="[2001:db8::1]";proto=http;host="[2001:db8::2]:8080"']


def test_both_sends_both_vocabularies() -> None:
    out = sent(BOTH)
    assert out[b"x-forwarded-for"] == [b"6.6.6.6, 10.0.0.1"]
    assert out[b"x-forwarded-host"] == [b"shop.example"]
    assert out[b"forwarded"] == [b"for=10.0.0.1;proto=http;host=shop.example"]


def test_no_peer_address_is_unknown_in_forwarded() -> None:
    out = sent(BOTH, peer=None, headers=[(b"host", b"shop.example")])
    assert b"x-forwarded-for" not in out
    assert out[b"forwarded"] == [b"for=unknown;proto=http;host=shop.example"]


@pytest.mark.parametrize("mode", [X, RFC, BOTH])
def test_host_is_never_sent_here(mode: ForwardedHeader) -> None:
    assert b"host" not in sent(mode, trusted=True)


def test_a_preserved_host_leads_the_headers() -> None:
    scope = {"headers": [(b"accept", b"*/*"), (b"host", b"shop.example:8080")]}
    headers = [(b"accept", b"*/*")]
    assert with_client_host(headers, scope) == [(b"host", b"shop.example:8080"), *headers]
    assert with_client_host(headers, {"headers": []}) is headers  # HTTP/1.0 without a Host
