"""The WebSocket opening handshake as a proxy sees it (RFC 6455 §4): which requests are
handshakes, which are refused before any backend hears of them, the request head sent
upstream and the heads and frames written back by hand."""

from __future__ import annotations

import base64
import binascii
import http
import os
import struct

from cutover.types import RawHeaders, Scope

WEBSOCKET_VERSION = b"13"
_UPGRADE_HEADERS: RawHeaders = [(b"connection", b"upgrade"), (b"upgrade", b"websocket")]


def asks_for_websocket(headers: RawHeaders) -> bool:
    """Connection names upgrade and Upgrade offers websocket (lowercased ASGI headers)."""
    upgrade = connection = False
    for name, value in headers:
        if name == b"upgrade":
            upgrade = upgrade or b"websocket" in _tokens(value)
        elif name == b"connection":
            connection = connection or b"upgrade" in _tokens(value)
    return upgrade and connection


def _tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",")}


def handshake_problem(scope: Scope) -> tuple[int, str, RawHeaders] | None:
    """(status, reason, extra headers) for a handshake the proxy refuses itself
    (RFC 6455 §4.2.1, §4.4), else None."""
    if scope.get("method") != "GET":
        return 400, "a WebSocket handshake is a GET request (RFC 6455 §4.1)", []
    if scope.get("http_version") != "1.1":
        return 400, "a WebSocket handshake needs HTTP/1.1 (RFC 6455 §4.1)", []
    headers = scope["headers"]
    keys = [value for name, value in headers if name == b"sec-websocket-key"]
    if len(keys) != 1 or not _is_key(keys[0]):
        reason = "Sec-WebSocket-Key must be one base64-encoded 16-byte value (RFC 6455 §4.1)"
        return 400, reason, []
    versions = [value.strip() for name, value in headers if name == b"sec-websocket-version"]
    if versions != [WEBSOCKET_VERSION]:
        reason = "only WebSocket version 13 is supported (RFC 6455 §4.4)"
        return 426, reason, [(b"sec-websocket-version", WEBSOCKET_VERSION)]
    return None


def _is_key(value: bytes) -> bool:
    try:
        return len(base64.b64decode(value.strip(), validate=True)) == 16
    except binascii.Error:
        return False


def request_head(target: bytes, host: bytes, headers: RawHeaders) -> bytes:
    """The handshake for the backend: ``headers`` are the forwarded ones (hop-by-hop already
    removed, X-Forwarded-* and Via added); Connection and Upgrade are put back, since this
    hop is the upgrade."""
    lines = [b"GET ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in [*headers, *_UPGRADE_HEADERS]:
        lines += [name, b": ", value, b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)


def response_head(status: int, headers: RawHeaders) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        phrase = b""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, phrase)]
    for name, value in headers:
        lines += [name, b": ", value, b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)


def switching_headers(forwarded: RawHeaders) -> RawHeaders:
    """The 101's headers for the client: the backend's (hop-by-hop removed, Via and ours
    added by the caller), with Connection and Upgrade of this hop."""
    return [*_UPGRADE_HEADERS, *forwarded]


def close_frame(code: int, *, masked: bool) -> bytes:
    """A close frame carrying ``code`` (RFC 6455 §5.5.1); a client's frames are masked."""
    payload = struct.pack("!H", code)
    if not masked:
        return b"\x88\x02" + payload
    mask = os.urandom(4)
    return b"\x88\x82" + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
