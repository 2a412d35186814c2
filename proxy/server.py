"""Run the gateway under uvicorn (uvloop and httptools where installed)."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .config import Settings


def uvicorn_config(settings: Settings, *, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        host=settings.listen.host,
        port=settings.listen.port,
        loop="auto",
        http="auto",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        # The upstream's Server and Date headers pass through; don't add a second pair.
        server_header=False,
        date_header=False,
        # X-Forwarded-* from clients are data to append to, not facts about the peer.
        proxy_headers=False,
    )


def serve(settings: Settings, *, log_level: str = "info") -> None:
    uvicorn.Server(uvicorn_config(settings, log_level=log_level)).run()
