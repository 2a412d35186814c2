"""The client behind trusted proxies: the first untrusted hop from the right, never a value
an untrusted sender wrote."""

from __future__ import annotations

import ipaddress

import pytest

from cutover.request.peers import TRUSTED_PEER, TrustedProxies, trusted_proxies
from cutover.vocabulary import ForwardedHeader

LB = ("10.0.0.1", 41000)
NETWORKS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def proxies(header: ForwardedHeader = ForwardedHeader.X_FORWARDED) -> TrustedProxies:
    return TrustedProxies(NETWORKS, header)


def client(headers: list[tuple[bytes, bytes]], peer=LB, **kw) -> tuple[str, int]:
    return proxies(**kw).client(peer, headers)


def xff(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", value)]


def test_no_networks_no_resolver() -> None:
    assert trusted_proxies([], ForwardedHeader.X_FORWARDED) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"203.0.113.9", "203.0.113.9"),
        (b"6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the client's own first entry is a lie
        (b"6.6.6.6, 203.0.113.9, 10.1.2.3, 10.0.0.7", "203.0.113.9"),  # past trusted hops
        (b"10.1.2.3, 10.0.0.7", "10.1.2.3"),  # every hop trusted: the farthest one
        (b"garbage, 203.0.113.9", "203.0.113.9"),
        (b"203.0.113.9, garbage", "10.0.0.1"),  # the trusted peer wrote nonsense: itself
        (b"6.6.6.6, unknown, 10.0.0.7", "10.0.0.7"),  # stops at what is not an address
        (b"203.0.113.9:5555", "203.0.113.9"),
        (b"[2001:db8::9]:443, fd00::1", "2001:db8::9"),
        (b"", "10.0.0.1"),
        (b"\xff\xfe, ,,", "10.0.0.1"),
    ],
)
def test_x_forwarded_for_from_a_trusted_peer(value: bytes, expected: str) -> None:
    assert client(xff(value))[0] == expected


def test_a_chain_of_trusted_hops_longer_than_the_limit_is_not_believed_past_it() -> None:
    hops = b", ".join([b"203.0.113.9"] + [b"10.0.0.%d" % (i % 250 + 2) for i in range(500)])
    assert client(xff(hops))[0].startswith("10.0.0.")  # never the address beyond the limit


def test_two_fields_are_one_chain() -> None:
    headers = [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9"), (b"x-forwarded-for", b"10.0.0.3")]
    assert client(headers) == ("203.0.113.9", 0)


def test_forwarded_is_read_under_rfc7239_and_x_forwarded_for_is_not() -> None:
    headers = [(b"forwarded", b'for="[2001:db8::9]:4711";proto=https, for=10.0.0.9'),
               (b"x-forwarded-for", b"6.6.6.6")]  # fmt: skip
    assert client(headers, header=ForwardedHeader.RFC7239) == ("2001:db8::9", 4711)
    assert client(headers) == ("6.6.6.6", 0)  # x-forwarded reads only X-Forwarded-For
    assert client(xff(b"6.6.6.6"), header=ForwardedHeader.RFC7239) == LB


def test_both_prefers_forwarded_and_falls_back_to_x_forwarded_for() -> None:
    both = ForwardedHeader.BOTH
    assert client([(b"forwarded", b"for=192.0.2.7"), *xff(b"6.6.6.6")], header=both)[0] == (
        "192.0.2.7"
    )
    assert client(xff(b"192.0.2.8"), header=both)[0] == "192.0.2.8"


@pytest.mark.parametrize(
    "value",
    [b"for=_hidden", b"for=unknown", b"proto=https", b'for="_x";by=10.0.0.2', b'for="6.6.6.6'],
)
def test_obfuscated_or_missing_identifiers_leave_the_trusted_peer(value: bytes) -> None:
    assert client([(b"forwarded", value)], header=ForwardedHeader.RFC7239) == LB


def test_resolve_touches_nothing_from_an_untrusted_peer() -> None:
    scope = {"client": ("203.0.113.50", 1234), "headers": xff(b"10.0.0.1, 1.2.3.4")}
    proxies().resolve(scope)
    assert scope["client"] == ("203.0.113.50", 1234) and TRUSTED_PEER not in scope


def test_resolve_from_a_trusted_peer_keeps_the_peer_apart() -> None:
    scope = {"client": LB, "headers": xff(b"203.0.113.9")}
    proxies().resolve(scope)
    assert scope["client"] == ("203.0.113.9", 0) and scope[TRUSTED_PEER] == LB


@pytest.mark.parametrize("peer", ["::ffff:10.0.0.1", "fd00::5"])
def test_a_mapped_or_ipv6_peer_is_matched_against_its_networks(peer: str) -> None:
    scope = {"client": (peer, 1), "headers": xff(b"203.0.113.9")}
    proxies().resolve(scope)
    assert scope["client"][0] == "203.0.113.9"


@pytest.mark.parametrize("peer", [None, ("testclient", 50000), ("11.0.0.1", 1)])
def test_a_peer_that_is_not_a_trusted_address_is_the_client(peer) -> None:
    scope = {"client": peer, "headers": xff(b"203.0.113.9")}
    proxies().resolve(scope)
    assert scope["client"] == peer
