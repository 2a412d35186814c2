"""The ``websockets`` library's server as a backend, on a free port, in a thread of its own
(one event loop serving every connection). What each path does:

- ``/echo`` (and any other): every message back as it came, text or binary.
- ``/fragments``: for each message read as a stream, the number of fragments it came in.
- ``/close/CODE``: closes with CODE at once.
- ``/die``: after the first message, the TCP connection is cut (no close frame).
- ``/forbidden``: the handshake is refused with 403.

Every handshake the server saw and every close code it received are recorded."""

from __future__ import annotations

import asyncio
import http
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


@dataclass
class WsBackend:
    name: str
    port: int = 0
    handshakes: list[Headers] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)  # codes received from the proxy
    tls: bool = False

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append(request.headers)
        if request.path == "/forbidden":
            return connection.respond(http.HTTPStatus.FORBIDDEN, f"{self.name} says no\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        try:
            if path.startswith("/close/"):
                await ws.close(int(path.rsplit("/", 1)[1]), "closed by the backend")
            elif path == "/die":
                await ws.recv()
                ws.transport.abort()
            elif path == "/fragments":
                while True:
                    fragments = [fragment async for fragment in ws.recv_streaming()]
                    await ws.send(str(len(fragments)))
            else:
                async for message in ws:
                    await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            self.closes.append(ws.close_code)


def prefer_v2(connection: ServerConnection, offered: Sequence[str]) -> str | None:
    """The server's preference among what the client offered; none offered, none chosen."""
    return next((proto for proto in ("chat.v2", "chat.v1") if proto in offered), None)


@contextmanager
def ws_backends(*names: str, tls: ssl.SSLContext | None = None) -> Iterator[dict[str, WsBackend]]:
    """Started servers by name (``wss://`` with ``tls``, a server context), stopped on exit."""
    backends = {name: WsBackend(name, tls=tls is not None) for name in names}
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        servers = []
        for backend in backends.values():
            server = await serve(
                backend.handle, "127.0.0.1", 0, process_request=backend.process_request,
                select_subprotocol=prefer_v2, max_size=None, ping_interval=None, ssl=tls,
            )  # fmt: skip
            backend.port = server.sockets[0].getsockname()[1]
            servers.append(server)
        ready.set()
        await stop.wait()
        for server in servers:
            server.close()
            await server.wait_closed()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the websockets servers did not start"
    try:
        yield backends
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
