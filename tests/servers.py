"""Run real uvicorn servers on free ports in background threads (for end-to-end tests).

The socket is bound here (port 0, so the OS picks a free port) and handed to
``uvicorn.Server.run(sockets=[...])``: whatever host/port the ``uvicorn.Config`` names
is ignored, so a production config (``cutover.ops.server.uvicorn_config``) can be served as is.

    with serve(app) as url:               # a plain ASGI app, test-friendly defaults
        ...
    with serve_config(config) as url:     # a ready uvicorn.Config
        ...
"""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

STARTUP_DEADLINE = 10.0
SHUTDOWN_DEADLINE = 10.0

_DEFAULTS: dict[str, Any] = {
    "lifespan": "auto",
    "loop": "asyncio",
    "log_level": "warning",
    "access_log": False,
}


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to a free port on ``host`` (not yet listening).

    ``proto`` must be IPPROTO_TCP, not the default 0: asyncio only sets TCP_NODELAY on
    accepted sockets whose proto says TCP, and without it every response written in
    two parts waits out the peer's delayed ACK (~40 ms a request)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def _wait(predicate: Any, deadline: float, interval: float = 0.005) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextmanager
def serve_config(config: uvicorn.Config, sock: socket.socket | None = None) -> Iterator[str]:
    """Serve ``config`` on a fresh 127.0.0.1 port (or on ``sock``, already bound) in a
    daemon thread; yield the base URL. The socket is closed on exit."""
    sock = sock if sock is not None else free_socket()
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{port}", daemon=True
    )
    thread.start()
    try:
        # Startup failure (e.g. lifespan.startup.failed) ends the thread without `started`.
        if not _wait(lambda: server.started or not thread.is_alive(), STARTUP_DEADLINE):
            raise RuntimeError(f"uvicorn on port {port} did not start in {STARTUP_DEADLINE}s")
        if not server.started:
            raise RuntimeError(f"uvicorn on port {port} failed to start (see its log)")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_DEADLINE)
        if thread.is_alive():
            # A connection or task that never finishes: stop waiting for it.
            server.force_exit = True
            thread.join(SHUTDOWN_DEADLINE)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"uvicorn on port {port} did not shut down")


@contextmanager
def serve(app: Any, **uvicorn_config_kwargs: Any) -> Iterator[str]:
    """Serve an ASGI app (lifespan auto, asyncio loop, quiet logs unless overridden)."""
    kwargs = {**_DEFAULTS, **uvicorn_config_kwargs}
    with serve_config(uvicorn.Config(app, **kwargs)) as url:
        yield url


@contextmanager
def serve_raw(handler: Any, *, limit: int | None = None) -> Iterator[str]:
    """A raw asyncio TCP server (``asyncio.start_server``) in a thread of its own, for what a
    well-behaved HTTP server won't do; yields its URL. ``limit``: the StreamReader's buffer."""
    sock = free_socket()
    host, port = sock.getsockname()[:2]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    options = {} if limit is None else {"limit": limit}

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(handler, sock=sock, **options))
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            # The proxy's keep-alive connections may still be open: end their handlers.
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.close()

    thread = threading.Thread(target=run, name=f"raw:{port}", daemon=True)
    thread.start()
    try:
        if not ready.wait(STARTUP_DEADLINE):
            raise RuntimeError(f"the raw server on port {port} did not start")
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(SHUTDOWN_DEADLINE)


@contextmanager
def serve_stdlib(handler: Any) -> Iterator[str]:
    """The standard library's ``http.server`` with ``handler`` (HTTP/1.0 unless the handler
    says otherwise), threaded, on a free port: a server nobody here wrote."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the request headers it got, as JSON (keep-alive)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({key.lower(): value for key, value in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def echo_backend() -> Iterator[str]:
    """``http.server`` answering with the headers it got: what a backend saw, as JSON."""
    with serve_stdlib(EchoHandler) as url:
        yield url
