"""An upstream over any ``httpx.AsyncBaseTransport``: the seam tests use to hand in
a respx router or ``httpx.MockTransport``. Production uses ``cutover.upstream.http1``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from cutover.config import TimeoutsConfig
from cutover.types import RawHeaders
from cutover.upstream.base import (
    RequestBody,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReset,
    UpstreamTimeout,
)


def translate(exc: httpx.TransportError) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(str(exc) or "timed out")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamConnectError(str(exc))
    if isinstance(exc, httpx.RemoteProtocolError):
        return UpstreamProtocolError(str(exc))
    return UpstreamReset(str(exc) or type(exc).__name__)


class HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        # The transport's own byte stream: raw bytes, never decoded.
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        self._chunks: AsyncIterator[bytes] = aiter(stream)
        self.status = response.status_code
        self.headers: RawHeaders = list(response.headers.raw)

    async def read(self) -> tuple[bytes, bool]:
        try:
            return await anext(self._chunks), True
        except StopAsyncIteration:
            return b"", False
        except httpx.TransportError as exc:
            raise translate(exc) from exc

    def abort(self) -> None:
        pass

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxUpstream:
    def __init__(
        self, base_url: str, timeouts: TimeoutsConfig, transport: httpx.AsyncBaseTransport
    ) -> None:
        self.base_url = base_url
        self._transport = transport
        self._timeout = {
            "connect": timeouts.connect,
            "read": timeouts.read,
            "write": timeouts.read,
            "pool": timeouts.connect,
        }

    async def start(self) -> None:
        pass

    async def send(
        self, method: str, url: str, headers: RawHeaders, body: RequestBody
    ) -> HttpxResponse:
        request = httpx.Request(
            method, url, headers=headers, content=body, extensions={"timeout": self._timeout}
        )
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TransportError as exc:
            raise translate(exc) from exc
        response.request = request
        return HttpxResponse(response)

    def retire(self) -> None:
        pass  # the transport is the caller's

    async def aclose(self) -> None:
        pass
