"""Run Cutover under uvicorn (uvloop and httptools where installed): one server, two
sockets — the proxy listener and the admin listener."""

from __future__ import annotations

import copy
import logging
import socket
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from .app import create_app
from .config import Settings
from .gateway import Gateway, Listeners

logger = logging.getLogger("cutover.server")


class ListenError(Exception):
    """A listener's address could not be bound."""


def logging_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging setup, plus Cutover's own ``cutover.*`` loggers on stderr."""
    config = copy.deepcopy(LOGGING_CONFIG)
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
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def uvicorn_config(settings: Settings, *, log_level: str = "info") -> uvicorn.Config:
    """The proxy listener alone (no admin, no guard): what tests of the forwarding use."""
    return server_config(
        create_app(settings), host=settings.listen.host, port=settings.listen.port,
        log_level=log_level,
    )  # fmt: skip


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


def serve(settings: Settings, *, config_path: str | Path | None, log_level: str = "info") -> None:
    """Build the gateway (restoring the rollout state), bind both listeners, serve until
    SIGINT/SIGTERM. Raises StateError or ListenError before serving anything."""
    gateway = Gateway(settings, config_path=config_path)
    proxy_socket = bind(settings.listen.host, settings.listen.port)
    admin_socket = bind(settings.admin.host, settings.admin.port)
    admin_port = admin_socket.getsockname()[1]
    config = server_config(Listeners(gateway, admin_port), log_level=log_level)
    proxy_host, proxy_port = proxy_socket.getsockname()[:2]
    logger.info(
        "proxy on http://%s:%s, admin on http://%s:%s (phase %s, weight %g%%)",
        proxy_host, proxy_port, settings.admin.host, admin_port,
        gateway.rollout.phase, gateway.rollout.weight,
    )  # fmt: skip
    uvicorn.Server(config).run(sockets=[proxy_socket, admin_socket])
