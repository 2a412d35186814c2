"""The moment a WebSocket handshake's head is parsed: the HTTP protocol hands its connection
to a ``ClientEnd`` and the app gets a ``websocket`` scope carrying it (the extension
``TUNNEL``). What followed the head on the connection is kept for the backend, never parsed
as HTTP."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from typing import Any

import httptools

from cutover.request.ws_tunnel import ClientEnd
from cutover.types import Message, Scope

TUNNEL = "cutover.tunnel"
logger = logging.getLogger("cutover.websocket")


def websocket_scope(http: Any, client_end: ClientEnd) -> Scope:
    """The ASGI ``websocket`` scope for the request ``http`` (uvicorn's httptools protocol)
    has parsed the head of; ``method`` kept beside the standard keys for the checks."""
    parsed = httptools.parse_url(http.url)
    raw_path = parsed.path
    path = raw_path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    scope = http.scope
    return {
        "type": "websocket",
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": "wss" if http.scheme == "https" else "ws",
        "server": http.server,
        "client": http.client,
        "root_path": "",
        "path": path,
        "raw_path": raw_path,
        "query_string": parsed.query or b"",
        "headers": http.headers,
        "subprotocols": [],
        "state": scope["state"],
        "extensions": {TUNNEL: client_end},
    }


def hand_over(http: Any, rest: bytes) -> None:
    """Called by the HTTP protocol instead of uvicorn's handover to its ws protocol."""
    cycle = http.cycle
    if cycle is not None and not cycle.response_complete:
        # Pipelined behind a request still being answered: its 101 would overtake that
        # answer. Refused after it (the protocol's refusals wait their turn), then closed.
        http.send_400_response("a WebSocket handshake must not be pipelined")
        return
    http.connections.discard(http)
    client_end = http.ws_protocol_class(http.server_state)
    try:
        scope = websocket_scope(http, client_end)
    except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
        http.send_400_response("the request target is not a valid URL")
        return
    transport = http.transport
    transport.set_protocol(client_end)
    client_end.connection_made(transport)
    if rest:
        client_end.data_received(rest)
    task = http.loop.create_task(run(http.app, scope, client_end))
    task.add_done_callback(http.tasks.discard)
    http.tasks.add(task)


async def _nothing() -> Message:
    await asyncio.Future()  # the app reads the client through the tunnel, never here
    raise AssertionError


async def run(app: Any, scope: Scope, client_end: ClientEnd) -> None:
    try:
        await app(scope, _nothing, client_end.respond)
    except Exception:
        logger.exception("the WebSocket handshake failed in the proxy")
    finally:
        if client_end.pipe is None and not client_end.transport.is_closing():
            client_end.transport.close()  # no answer and no splice: nothing else will close it
