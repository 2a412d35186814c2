"""RFC 7239 ``Forwarded`` and ``X-Forwarded-For`` as text: the nodes a chain of proxies
wrote, read from the right, and the element Cutover adds for its own hop.

Reading is bounded: at most ``MAX_HOPS`` nodes from the right are looked at, whatever
the header's length (the head itself is bounded by the protocol's limits), and every
value that is not an address (``unknown``, an obfuscated ``_name``, garbage) comes back
as ``None`` for the caller to stop at."""

from __future__ import annotations

import re
import socket

from cutover.types import RawHeaders

MAX_HOPS = 32  # nodes read from the right of a chain; past them the chain is not believed

# An element: tokens and quoted-strings up to the next comma outside quotes.
_ELEMENT = re.compile(rb'(?:[^",]|"(?:[^"\\]|\\.)*")+')
# One forwarded-pair of an element: token "=" ( token / quoted-string ).
_PAIR = re.compile(rb'\s*([^=;"\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;"]*)\s*(?:;|$)')
_ESCAPE = re.compile(rb"\\(.)")
# RFC 9110 tchar: a value made only of these needs no quotes.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def normalized(host: str) -> str | None:
    """An IP address in its canonical text (``2001:DB8:0::1`` → ``2001:db8::1``), else None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):
        return None


def parse_node(text: bytes) -> tuple[str, int] | None:
    """``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]`` or
    ``[2001:db8::1]:80`` as (canonical address, port; 0 when none or obfuscated); None
    otherwise."""
    text = text.strip()
    port = b""
    if text.startswith(b"["):
        host, sep, rest = text[1:].partition(b"]")
        if not sep or (rest and not rest.startswith(b":")):
            return None
        port = rest[1:]
    elif text.count(b":") == 1:
        host, _, port = text.partition(b":")
    else:
        host = text
    try:
        address = normalized(host.decode("ascii"))
    except UnicodeDecodeError:
        return None
    if address is None:
        return None
    return address, int(port) if port.isdigit() and len(port) <= 5 else 0


def _unquote(value: bytes) -> bytes:
    if len(value) >= 2 and value.startswith(b'"') and value.endswith(b'"'):
        return _ESCAPE.sub(rb"\1", value[1:-1])
    return value


def forwarded_for_nodes(value: bytes) -> list[bytes | None]:
    """The ``for=`` node of each element of a Forwarded value, rightmost first, at most
    ``MAX_HOPS`` + 1 of them (the last one None when there were more); None for an
    element without one."""
    elements = _ELEMENT.findall(value)
    nodes: list[bytes | None] = []
    for element in reversed(elements[-MAX_HOPS:]):
        node = None
        for match in _PAIR.finditer(element):
            if match.group(1).lower() == b"for":
                node = _unquote(match.group(2))
                break
        nodes.append(node)
    if len(elements) > MAX_HOPS:
        nodes.append(None)
    return nodes


def x_forwarded_for_nodes(value: bytes) -> list[bytes | None]:
    """The nodes of an X-Forwarded-For value, rightmost first, as ``forwarded_for_nodes``."""
    parts = value.rsplit(b",", MAX_HOPS)
    nodes: list[bytes | None] = [part.strip() for part in reversed(parts[-MAX_HOPS:])]
    if len(parts) > MAX_HOPS:
        nodes.append(None)
    return nodes


def joined(headers: RawHeaders, name: bytes) -> bytes | None:
    """Every ``name`` field of the request as one comma-separated value (RFC 9110 §5.3)."""
    value = None
    for key, field in headers:
        if key == name:
            value = field if value is None else value + b", " + field
    return value


def _quoted(value: bytes) -> bytes:
    return value if _TOKEN.fullmatch(value) else b'"' + value + b'"'


def node_text(host: str | None) -> bytes:
    """A peer's address as an RFC 7239 node: IPv6 bracketed and quoted (§6), anything
    that is not an address ``unknown``."""
    address = None if host is None else normalized(host)
    if address is None:
        return b"unknown"
    if ":" in address:
        return b'"[' + address.encode("ascii") + b']"'
    return address.encode("ascii")


def forwarded_element(peer: str | None, scheme: str, host: bytes | None) -> bytes:
    """Cutover's own element: ``for=<peer>;proto=<scheme>[;host=<Host>]``. A Host the
    protocol let through has no quote or backslash, so quoting it needs no escapes."""
    element = b"for=" + node_text(peer) + b";proto=" + scheme.encode("latin-1")
    if host is not None:
        element += b";host=" + _quoted(host)
    return element
