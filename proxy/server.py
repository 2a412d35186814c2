"""Run the gateway under uvicorn (uvloop and httptools where installed)."""

from __future__ import annotations

import copy

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from .app import create_app
from .config import Settings


def logging_config(log_level: str) -> dict:
    """uvicorn's logging setup, plus Cutover's own ``cutover.*`` loggers on stderr."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["fmt"] = "%(asctime)s %(levelprefix)s %(name)s: %(message)s"
    config["loggers"]["cutover"] = {
        "handlers": ["default"],
        "level": log_level.upper(),
        "propagate": False,
    }
    return config


def uvicorn_config(settings: Settings, *, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        host=settings.listen.host,
        port=settings.listen.port,
        loop="auto",
        http="auto",
        lifespan="on",
        log_level=log_level,
        log_config=logging_config(log_level),
        access_log=False,
        # The upstream's Server and Date headers pass through; don't add a second pair.
        server_header=False,
        date_header=False,
        # X-Forwarded-* from clients are data to append to, not facts about the peer.
        proxy_headers=False,
    )


def serve(settings: Settings, *, log_level: str = "info") -> None:
    uvicorn.Server(uvicorn_config(settings, log_level=log_level)).run()
