"""Forwarding headers as text: nodes read from the right, bounded; Cutover's own element."""

from __future__ import annotations

import pytest

from cutover.request.forwarded import (
    MAX_HOPS,
    forwarded_element,
    forwarded_for_nodes,
    joined,
    node_text,
    parse_node,
    x_forwarded_for_nodes,
)


@pytest.mark.parametrize(
    ("text", "address", "port"),
    [
        (b"192.0.2.60", "192.0.2.60", 0),
        (b" 192.0.2.60:4711 ", "192.0.2.60", 4711),
        (b"2001:db8:cafe::17", "2001:db8:cafe::17", 0),
        (b"[2001:db8:cafe::17]", "2001:db8:cafe::17", 0),
        (b"[2001:db8:cafe::17]:4711", "2001:db8:cafe::17", 4711),
        (b"192.0.2.43:_hidden", "192.0.2.43", 0),  # an obfuscated port (RFC 7239 §6.3)
        (b"[2001:DB8:0:0::17]", "2001:db8::17", 0),  # canonical: one client, one key
    ],
)
def test_a_node_is_an_address_and_a_port(text: bytes, address: str, port: int) -> None:
    assert parse_node(text) == (address, port)


@pytest.mark.parametrize(
    "text",
    [b"unknown", b"_hidden", b"_SEVKISEK", b"", b"evil.example", b"1.2.3", b"[::1", b"[::1]x",
     b"300.1.1.1", b"1.2.3.4:5:6", b"\xff\xfe", b"<script>", b"1.2.3.4 5.6.7.8"],
)  # fmt: skip
def test_anything_else_is_not_a_node(text: bytes) -> None:
    assert parse_node(text) is None


def test_x_forwarded_for_is_read_from_the_right() -> None:
    assert x_forwarded_for_nodes(b"203.0.113.9, 10.0.0.2 ,10.0.0.1") == [
        b"10.0.0.1", b"10.0.0.2", b"203.0.113.9",
    ]  # fmt: skip


def test_a_long_chain_is_read_only_to_the_hop_limit() -> None:
    value = b", ".join(b"10.0.%d.%d" % divmod(i, 256) for i in range(5000))
    nodes = x_forwarded_for_nodes(value)
    assert len(nodes) == MAX_HOPS + 1 and nodes[-1] is None
    assert nodes[0] == b"10.0.19.135"  # the 5000th
    assert len(forwarded_for_nodes(value.replace(b"10.", b"for=10."))) == MAX_HOPS + 1


def test_forwarded_elements_and_their_for_parameter() -> None:
    value = (
        b'for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https, '
        b"proto=http;by=203.0.113.43, For=_hidden;host=a.example"
    )
    assert forwarded_for_nodes(value) == [b"_hidden", None, b"[2001:db8:cafe::17]:4711",
                                          b"192.0.2.43"]  # fmt: skip


def test_a_quoted_value_hides_commas_semicolons_and_fake_parameters() -> None:
    # The last element is the trusted proxy's; a host with ";for=" inside quotes is no for.
    value = b'for=198.51.100.7;host="x.example;for=6.6.6.6,for=6.6.6.6", for=10.0.0.1'
    assert forwarded_for_nodes(value) == [b"10.0.0.1", b"198.51.100.7"]
    assert forwarded_for_nodes(b'for="\\1\\.2.3.4"') == [b"1.2.3.4"]  # quoted-pair unescaped


def test_a_client_cannot_swallow_the_proxy_element_with_an_open_quote() -> None:
    # The client's header was `for="6.6.6.6`, the trusted proxy appended its own element.
    nodes = forwarded_for_nodes(b'for="6.6.6.6, for=198.51.100.7')
    assert nodes[0] == b"198.51.100.7"
    nodes = forwarded_for_nodes(b'for="x, for=6.6.6.6, for="[2001:db8::1]"')
    assert all(node is None or parse_node(node) is None for node in nodes)


def test_repeated_fields_are_joined_in_order() -> None:
    headers = [(b"x-forwarded-for", b"1.1.1.1"), (b"a", b"b"), (b"x-forwarded-for", b"2.2.2.2")]
    assert joined(headers, b"x-forwarded-for") == b"1.1.1.1, 2.2.2.2"
    assert joined(headers, b"forwarded") is None


@pytest.mark.parametrize(
    ("peer", "node"),
    [("192.0.2.1", b"192.0.2.1"), ("2001:DB8::1", b'"[2001:db8::1]"'),
     ("testclient", b"unknown"), (None, b"unknown")],
)  # fmt: skip
def test_a_peer_as_a_node_ipv6_quoted_and_bracketed(peer: str | None, node: bytes) -> None:
    assert node_text(peer) == node


def test_cutovers_element_names_the_peer_the_scheme_and_the_host() -> None:
    assert forwarded_element("192.0.2.1", "https", b"shop.example") == (
        b"for=192.0.2.1;proto=https;host=shop.example"
    )
    assert forwarded_element("::1", "http", b"shop.example:8080") == (
        b'for="[::1]";proto=http;host="shop.example:8080"'
    )
    assert forwarded_element("192.0.2.1", "http", None) == b"for=192.0.2.1;proto=http"
