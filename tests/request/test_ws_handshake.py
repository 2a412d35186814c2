"""The handshake rules the proxy applies itself (RFC 6455 §4.1, §4.2.1, §4.4) and the bytes
it writes by hand, read back with the ``websockets`` library's own parser."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.frames import Close, Frame, Opcode

from cutover.request.ws_handshake import (
    asks_for_websocket,
    close_frame,
    handshake_problem,
    request_head,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def scope(*headers: tuple[bytes, bytes], method: str = "GET", version: str = "1.1") -> Any:
    base = [(b"sec-websocket-key", KEY), (b"sec-websocket-version", b"13")]
    names = {name for name, _ in headers}
    kept = [field for field in base if field[0] not in names]
    return {"method": method, "http_version": version, "headers": [*kept, *headers]}


@pytest.mark.parametrize(
    ("request_scope", "status"),
    [
        (scope(), None),
        (scope(method="POST"), 400),
        (scope(version="1.0"), 400),
        (scope((b"sec-websocket-key", b"short")), 400),
        (scope((b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ")), 400),  # padding missing
        (scope((b"sec-websocket-key", KEY), (b"sec-websocket-key", KEY)), 400),
        (scope((b"sec-websocket-version", b"8")), 426),
    ],
    ids=["valid", "post", "http10", "short-key", "bad-base64", "two-keys", "version-8"],
)
def test_handshake_problem(request_scope: Any, status: int | None) -> None:
    problem = handshake_problem(request_scope)
    assert (problem and problem[0]) == status
    if status == 426:
        assert problem is not None and problem[2] == [(b"sec-websocket-version", b"13")]


def test_asks_for_websocket_reads_tokens() -> None:
    assert asks_for_websocket([(b"connection", b"keep-alive, Upgrade"), (b"upgrade", b"WebSocket")])
    assert not asks_for_websocket([(b"upgrade", b"websocket")])  # Connection must name it
    assert not asks_for_websocket([(b"connection", b"upgrade"), (b"upgrade", b"h2c")])


def test_the_request_head_keeps_this_hops_upgrade() -> None:
    head = request_head(b"/chat?room=1", b"backend:8000", [(b"sec-websocket-key", KEY)])
    assert head == (
        b"GET /chat?room=1 HTTP/1.1\r\nhost: backend:8000\r\nsec-websocket-key: " + KEY +
        b"\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    )  # fmt: skip


@pytest.mark.parametrize("masked", [False, True])
def test_close_frames_parse(masked: bool) -> None:
    data = close_frame(1012, masked=masked)
    assert bool(data[1] & 0x80) is masked  # to a backend masked, to a client not (§5.3)
    chunks = [data]

    def read_exact(n: int) -> Any:
        chunk = chunks[0][:n]
        chunks[0] = chunks[0][n:]
        yield from ()
        return chunk

    parser = Frame.parse(read_exact, mask=masked)
    try:
        while True:
            next(parser)
    except StopIteration as done:
        frame = done.value
    assert frame.opcode == Opcode.CLOSE
    assert Close.parse(frame.data).code == 1012
