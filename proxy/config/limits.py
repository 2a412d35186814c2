"""How long and how much: the ``timeouts`` towards the backends, the ``limits`` on what
clients send and how many requests wait, and the ``shutdown`` grace."""

from __future__ import annotations

from pydantic import Field

from cutover.config.base import PositiveSeconds, SectionConfig


class TimeoutsConfig(SectionConfig):
    connect: PositiveSeconds = 2.0
    read: PositiveSeconds = 30.0
    # The whole wait for a backend's response headers (connect, send, first byte); None: no cap.
    total: PositiveSeconds | None = None
    # How long an unused keep-alive connection to a backend is kept. Below the 5 s after
    # which uvicorn (and Node) close idle connections, so a reused one is rarely stale.
    pool_idle: PositiveSeconds = 4.0


class LimitsConfig(SectionConfig):
    # Bytes of request body; None: no limit (bodies stream, so memory stays flat either way).
    max_request_body: int | None = Field(None, ge=0)
    # Requests in flight to one backend; the rest wait up to queue_timeout, then get 503.
    max_concurrent_per_backend: int = Field(1024, ge=1)
    queue_timeout: PositiveSeconds = 5.0
    # The request head: a longer target gets 414, larger headers 431.
    max_url_bytes: int = Field(8 * 1024, ge=256)
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    # A client's request head must arrive whole within header_timeout of its first byte, and
    # its body must not pause longer than body_timeout between two reads: else 408 and the
    # connection closes (as nginx's client_header_timeout and client_body_timeout).
    header_timeout: PositiveSeconds = 10.0
    body_timeout: PositiveSeconds = 30.0


class ShutdownConfig(SectionConfig):
    grace: PositiveSeconds = 30.0
