"""A WebSocket handshake in the app: refused before any backend by the rules of RFC 6455
§4.2.1, and through the deprecation gate like any request its migration sends to from.
The app is called directly with a ``websocket`` scope carrying a stand-in tunnel."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from cutover.ops.assembly import create_app
from cutover.request.ws_handoff import TUNNEL
from tests.clocks import Clock
from tests.conftest import make_settings
from tests.request.test_brownouts_app import DEPRECATION, WINDOW_START

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


class Tunnel:
    """What the app uses of a ClientEnd before any backend: ``respond``."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def respond(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def problem(self) -> dict[str, Any]:
        return json.loads(self.messages[1]["body"])


def handshake(tunnel: Tunnel, *fields: tuple[bytes, bytes]) -> dict[str, Any]:
    headers = [(b"host", b"example.test"), (b"connection", b"upgrade"),
               (b"upgrade", b"websocket"), (b"sec-websocket-version", b"13"), *fields]  # fmt: skip
    return {
        "type": "websocket", "method": "GET", "http_version": "1.1", "scheme": "ws",
        "path": "/api/orders", "raw_path": b"/api/orders", "query_string": b"",
        "headers": headers, "client": ("127.0.0.1", 5000), "extensions": {TUNNEL: tunnel},
    }  # fmt: skip


def call(app: Any, scope: dict[str, Any]) -> None:
    async def nothing() -> dict[str, Any]:
        raise AssertionError("the app reads nothing from receive")

    asyncio.run(app(scope, nothing, scope["extensions"][TUNNEL].respond))


def test_a_bad_key_is_refused_400_before_any_backend() -> None:
    app, tunnel = create_app(make_settings()), Tunnel()
    call(app, handshake(tunnel, (b"sec-websocket-key", b"too-short")))
    assert tunnel.status == 400
    assert "Sec-WebSocket-Key" in tunnel.problem["detail"]


def test_a_brownout_refuses_the_handshake_to_from() -> None:
    settings = make_settings(split={"weight": 0}, deprecation=DEPRECATION)
    app, tunnel = create_app(settings, clock=Clock(WINDOW_START)), Tunnel()
    call(app, handshake(tunnel, (b"sec-websocket-key", KEY)))
    assert tunnel.status == 410  # the brownout's answer: no backend was asked
    assert tunnel.problem["status"] == 410
