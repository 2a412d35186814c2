"""The production upstream client: one aiohttp session (one keep-alive pool) per backend.

No cookie jar, no redirects, no decompression, no headers of its own: what the
client sent is what the backend gets, less what the proxy rules remove.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from .config import Timeouts
from .types import RawHeaders
from .upstream import (
    RequestBody,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReset,
    UpstreamTimeout,
)

_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


def translate(exc: BaseException) -> UpstreamError:
    """Map an aiohttp/asyncio failure to the gateway's exception tree."""
    if isinstance(exc, asyncio.TimeoutError):  # ServerTimeoutError is one too
        return UpstreamTimeout(str(exc) or "timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(str(exc))
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return UpstreamProtocolError(str(exc) or type(exc).__name__)
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError):
        return UpstreamReset(str(exc) or "server disconnected")
    return UpstreamReset(str(exc) or type(exc).__name__)


_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class AiohttpResponse:
    __slots__ = ("_content", "_done", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._content = response.content
        self._done = False
        self.status = response.status
        self.headers: RawHeaders = list(response.raw_headers)

    async def read(self) -> tuple[bytes, bool]:
        try:
            chunk = await self._content.readany()
        except _FAILURES as exc:
            raise translate(exc) from exc
        more = bool(chunk) and not self._content.at_eof()
        self._done = not more
        return chunk, more

    def abort(self) -> None:
        self._response.close()

    async def aclose(self) -> None:
        # aiohttp returns the connection to the pool itself at the end of the body.
        if not self._done:
            self._response.release()


class AiohttpUpstream:
    def __init__(self, base_url: str, timeouts: Timeouts, *, pool_size: int = 1024) -> None:
        self.base_url = base_url
        self._timeouts = timeouts
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self._timeouts.connect, sock_read=self._timeouts.read
            ),
            raise_for_status=False,
        )

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: RequestBody
    ) -> AiohttpResponse:
        assert self._session is not None, "start() was not awaited"
        try:
            response = await self._session.request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
            )
        except _FAILURES as exc:
            raise translate(exc) from exc
        return AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
