"""The seam between the forwarder and an HTTP client library.

Exceptions::

    UpstreamError            the backend gave no usable response (502)
    ├── UpstreamConnectError connection refused, unreachable, DNS failure (502)
    ├── UpstreamReset        connection reset or closed mid-exchange (502)
    ├── UpstreamProtocolError malformed response (502)
    └── UpstreamTimeout      connect or read timed out (504)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from cutover.types import RawHeaders

RequestBody = bytes | AsyncIterator[bytes] | None


class UpstreamError(Exception):
    kind = "error"
    status = 502


class UpstreamConnectError(UpstreamError):
    kind = "connect"


class UpstreamReset(UpstreamError):
    kind = "reset"


class UpstreamProtocolError(UpstreamError):
    kind = "protocol"


class UpstreamTimeout(UpstreamError):
    kind = "timeout"
    status = 504


class UpstreamResponse(Protocol):
    status: int
    headers: RawHeaders

    async def read(self) -> tuple[bytes, bool]:
        """The next body chunk and whether more follows; raises UpstreamError."""
        ...

    def abort(self) -> None:
        """Stop reading now and drop the connection (the client went away)."""
        ...

    async def aclose(self) -> None:
        """Release the connection; safe to call more than once."""
        ...


class Upstream(Protocol):
    async def start(self) -> None: ...

    async def send(
        self, method: str, url: str, headers: RawHeaders, body: RequestBody
    ) -> UpstreamResponse:
        """Send a request and return once the response headers arrived; raises UpstreamError."""
        ...

    def retire(self) -> None:
        """Replaced by another client (a config reload): keep no connection for reuse from
        now on. Idle connections close at once, each busy one when its exchange is done;
        requests still sent through this client are served."""
        ...

    async def aclose(self) -> None: ...
