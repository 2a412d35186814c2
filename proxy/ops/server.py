"""Run Cutover under uvicorn (uvloop and httptools where installed): uvicorn serves the
proxy socket, and the admin API is served on its own socket (``listener.AppListener``)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from cutover.config import Settings
from cutover.ops.assembly import create_app
from cutover.ops.gateway import Gateway
from cutover.ops.listener import AppListener, Listeners
from cutover.ops.tls import ServingTls
from cutover.request.app import RESPONSE_ABANDONED
from cutover.request.fast_path import fast_in_flight, note_answers
from cutover.request.fast_protocol import configure
from cutover.request.ws_tunnel import ClientEnd

logger = logging.getLogger("cutover.server")

# The message uvicorn (0.54) cancels a request's task with when the shutdown grace runs out.
GRACE_CANCEL = "Task cancelled, timeout graceful shutdown exceeded"
UNFINISHED_RESPONSE = "ASGI callable returned without completing response."
# At most this long (never longer than the grace), before the wait for requests in flight:
# accepting the connections already queued, and waiting for their requests to come in.
SETTLE = 1.0


class ListenError(Exception):
    """A listener's address could not be bound."""


class GraceCutFilter(logging.Filter):
    """uvicorn logs each request it cancels when the shutdown grace runs out as "Exception
    in ASGI application" with the CancelledError's traceback. That is not a bug: make it
    one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError) and GRACE_CANCEL in exc.args:
            record.msg, record.args = "request cut off: the shutdown grace ran out", ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class AbandonedResponseFilter(logging.Filter):
    """uvicorn logs an ERROR for a response the app left unfinished. The proxy does that on
    purpose when a backend fails mid-body (and logs a warning saying so): drop uvicorn's
    line for those requests only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == UNFINISHED_RESPONSE and RESPONSE_ABANDONED.get())


def logging_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging setup, plus Cutover's own ``cutover.*`` loggers on stderr."""
    config = copy.deepcopy(LOGGING_CONFIG)
    filters = config.setdefault("filters", {})
    filters["grace_cut"] = {"()": GraceCutFilter}
    filters["abandoned"] = {"()": AbandonedResponseFilter}
    config["loggers"]["uvicorn.error"]["filters"] = ["grace_cut", "abandoned"]
    config["formatters"]["default"]["fmt"] = "%(asctime)s %(levelprefix)s %(name)s: %(message)s"
    config["loggers"]["cutover"] = {
        "handlers": ["default"],
        "level": log_level.upper(),
        "propagate": False,
    }
    return config


def server_config(app: Any, *, log_level: str = "info", **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "loop": "auto",
        "http": "auto",
        "lifespan": "on",
        "log_level": log_level,
        "log_config": logging_config(log_level),
        "access_log": False,
        # The upstream's Server and Date headers pass through; don't add a second pair.
        "server_header": False,
        "date_header": False,
        # X-Forwarded-* from clients are data to append to, not facts about the peer.
        "proxy_headers": False,
        # A WebSocket handshake's connection is handed to the proxy's splice (ws_handoff).
        "ws": ClientEnd,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def uvicorn_config(settings: Settings, *, log_level: str = "info") -> uvicorn.Config:
    """The proxy listener alone (no admin, no guard): what tests of the forwarding use."""
    return server_config(
        create_app(settings), host=settings.listen.host, port=settings.listen.port,
        log_level=log_level, timeout_keep_alive=settings.listen.keep_alive,
        http=listener_protocol(settings),
    )  # fmt: skip


def listener_protocol(settings: Settings) -> type:
    """uvicorn's ``http`` protocol with this config's bounds and deadlines for clients."""
    return configure(settings.limits)


def admin_listener(
    gateway: Gateway, sock: socket.socket, settings: Settings, *, log_level: str = "info"
) -> AppListener:
    """The admin API on ``sock``, with the proxy listener's protocol options."""
    config = server_config(
        gateway.admin, log_level=log_level, log_config=None, lifespan="off", ws="none",
        http=listener_protocol(settings), timeout_keep_alive=settings.listen.keep_alive,
    )  # fmt: skip
    return AppListener(sock, config)


def serving_tls(settings: Settings) -> ServingTls | None:
    """The proxy listener's TLS, its files loaded (raises TlsError), or None without it."""
    if settings.listen.tls is None:
        return None
    tls = ServingTls(settings.listen.tls)
    tls.context  # noqa: B018 - loads the files: a bad pair stops us before binding
    return tls


def tls_options(tls: ServingTls | None) -> dict[str, Any]:
    """uvicorn's options serving ``tls``'s front context (none without TLS)."""
    return {} if tls is None else {"ssl_context_factory": tls.context_factory}


def bind(host: str, port: int) -> socket.socket:
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class DrainingServer(uvicorn.Server):
    """uvicorn's server, logging the drain. On SIGINT/SIGTERM uvicorn (0.54) closes the
    listening sockets (new connections are refused; the admin listener, ``admin``, stops
    accepting too and closes after the drain), closes idle keep-alive connections,
    marks busy ones to close after their response, waits up to
    ``timeout_graceful_shutdown`` for the requests in flight, cancels what is left (the
    client gets a 500 if no response had started, else a cut connection), then runs the
    lifespan shutdown (Gateway.shutdown: guard stopped, webhooks given a short grace, the
    shadow log's totals line written). A second SIGINT skips the waiting and the lifespan
    shutdown."""

    def __init__(self, config: uvicorn.Config, *, admin: AppListener | None = None) -> None:
        super().__init__(config)
        self.admin = admin

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Only shutdown's own cost: nothing here touches the request path.
        grace = self.config.timeout_graceful_shutdown
        started = time.monotonic()
        settle_until = started + (SETTLE if grace is None else min(SETTLE, grace))
        # Closing a listener resets the connections still in its accept queue (established,
        # their request maybe sent): let the loop accept those first.
        listeners = [sock for sock in sockets or [] if sock.fileno() >= 0]
        while listeners and time.monotonic() < settle_until:
            if not select.select(listeners, [], [], 0)[0]:
                break
            await asyncio.sleep(0)
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()  # uvicorn's shutdown closes them again: that does nothing
        if self.admin is not None:
            self.admin.close()
        # uvicorn closes a connection with no request yet as idle, dropping the request its
        # client may just have sent: give the connections just accepted time to send theirs.
        while time.monotonic() < settle_until and any(
            getattr(connection, "cycle", True) is None
            for connection in self.server_state.connections
        ):
            await asyncio.sleep(0.005)
        in_flight = list(self.server_state.tasks)
        finished: list[float] = []
        for task in in_flight:
            task.add_done_callback(lambda _: finished.append(time.monotonic()))
        fast = fast_in_flight(self.server_state.connections)  # they have no task
        noting = asyncio.create_task(note_answers(fast, finished))
        logger.info(
            "draining: stopped accepting connections; %d request(s) in flight, grace %gs",
            len(in_flight) + len(fast), grace,
        )  # fmt: skip
        try:
            await super().shutdown(sockets=sockets)
        finally:
            noting.cancel()
        if self.force_exit:
            unfinished = sum(1 for task in in_flight if not task.done())
            logger.warning(
                "forced exit: %d request(s) in flight cut, shutdown steps skipped", unfinished
            )
            return
        # uvicorn cancels the requests still running when the grace runs out.
        cut = sum(1 for task in in_flight if task.cancelling()) + sum(e.cut for e in fast)
        drained = (max(finished) - started) if finished else 0.0
        total = time.monotonic() - started
        if cut:
            logger.warning(
                "drain cut short after %.2fs: %d request(s) finished, %d cut off when the "
                "%gs grace ran out; shutdown took %.2fs",
                drained, len(in_flight) + len(fast) - cut, cut, grace, total,
            )  # fmt: skip
        else:
            logger.info(
                "drained %d request(s) in %.2fs; shutdown took %.2fs",
                len(in_flight) + len(fast), drained, total,
            )  # fmt: skip


@contextlib.contextmanager
def signals_to(server: uvicorn.Server) -> Iterator[None]:
    """Hand SIGINT/SIGTERM to ``server`` around ``server.run()``.

    While it serves, uvicorn has its own handlers; when it is done it restores the previous
    ones and raises the signal it caught again, so that with the defaults a drain that went
    well still ends as "killed by SIGTERM" (exit status 143) or a KeyboardInterrupt (130).
    The handler installed here ignores that second delivery (the server is already done
    with that signal) and turns a signal that comes before uvicorn's handlers are in place
    (while the event loop starts) into a normal shutdown."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(sig: int, frame: Any) -> None:
        if not server.should_exit:
            server.handle_exit(sig, frame)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(settings: Settings, *, config_path: str | Path | None, log_level: str = "info") -> None:
    """Build the gateway (restoring the rollout state), bind both listeners, serve until
    SIGINT/SIGTERM, then drain (see DrainingServer) and return. Raises StateError or
    ListenError before serving anything, KeyboardInterrupt after a forced exit (a second
    SIGINT while draining: requests cut, nothing flushed), TlsError (a ConfigError) when
    ``listen.tls``'s files do not load."""
    tls = serving_tls(settings)
    gateway = Gateway(settings, config_path=config_path)
    proxy_socket = bind(settings.listen.host, settings.listen.port)
    admin_socket = bind(settings.admin.host, settings.admin.port)
    admin = admin_listener(gateway, admin_socket, settings, log_level=log_level)
    config = server_config(
        Listeners(gateway, admin, tls), log_level=log_level,
        http=listener_protocol(settings),
        timeout_keep_alive=settings.listen.keep_alive,
        timeout_graceful_shutdown=settings.shutdown.grace,
        **tls_options(tls),
    )  # fmt: skip
    proxy_host, proxy_port = proxy_socket.getsockname()[:2]
    admin_host, admin_port = admin_socket.getsockname()[:2]
    migrations = ", ".join(f"{r.name} {r.phase} {r.weight:g}%" for r in gateway.migrations)
    logger.info(
        "proxy on %s://%s:%s, admin on http://%s:%s (%s)",
        "http" if tls is None else "https", proxy_host, proxy_port, admin_host, admin_port,
        migrations,
    )  # fmt: skip
    server = DrainingServer(config, admin=admin)
    with signals_to(server):
        server.run(sockets=[proxy_socket])
    if server.force_exit:
        raise KeyboardInterrupt  # exit status 130, as for an interrupted command
