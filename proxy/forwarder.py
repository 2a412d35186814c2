"""Send one client request to the chosen backend and stream the answer back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from .config import Settings
from .deprecation import deprecation_headers
from .headers import BACKEND_HEADER, client_response_headers, upstream_request_headers
from .problem import send_problem
from .splitter import Decision
from .types import RawHeaders, Receive, Scope, Send
from .upstream import RequestBody, Upstream, UpstreamError, UpstreamResponse

logger = logging.getLogger("cutover.forwarder")

# Bodies up to this size (by Content-Length) are read whole before sending: one write
# upstream is cheaper than a streamed payload, and later features can replay them.
SMALL_BODY = 64 * 1024


class ClientDisconnected(Exception):
    """The client went away before its request body was read."""


class BadRequest(Exception):
    """The request cannot be forwarded as it stands (answered with 400)."""


class UpstreamBodyError(Exception):
    """The backend failed after the response started; the client connection is aborted."""


def request_length(headers: RawHeaders) -> tuple[int | None, bool]:
    """(Content-Length, has a body at all) from the request headers."""
    length = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            if length is not None or not value.isdigit():
                raise BadRequest("Content-Length must be a single non-negative integer")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked or bool(length)


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def stream_body(receive: Receive, done: asyncio.Event) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            done.set()
            return


async def wait_for_disconnect(receive: Receive, response: UpstreamResponse) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    response.abort()


class Forwarder:
    def __init__(self, settings: Settings, upstreams: dict[str, Upstream]) -> None:
        self.upstreams = upstreams
        self.base_urls = {
            "legacy": settings.backends.legacy.url,
            "new": settings.backends.new.url,
        }
        self._backend_headers = {
            name: [(BACKEND_HEADER, name.encode("ascii"))] for name in ("legacy", "new")
        }
        self._deprecation = deprecation_headers(settings.deprecation)

    def target_url(self, scope: Scope, backend: str) -> str:
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        url = self.base_urls[backend] + raw_path.decode("latin-1")
        query = scope.get("query_string", b"")
        return url + "?" + query.decode("latin-1") if query else url

    def response_extras(self, decision: Decision) -> RawHeaders:
        extra = self._backend_headers[decision.backend]
        if decision.backend == "legacy" and decision.deprecation and self._deprecation:
            extra = extra + self._deprecation
        if decision.set_cookie is not None:
            extra = [*extra, (b"set-cookie", decision.set_cookie)]
        return extra

    async def forward(self, scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
        backend = decision.backend
        headers = scope["headers"]
        client = scope.get("client")
        upstream_headers = upstream_request_headers(
            headers,
            client_host=client[0] if client else None,
            scheme=scope.get("scheme", "http"),
            http_version=scope.get("http_version", "1.1"),
        )
        length, has_body = request_length(headers)
        body_done = asyncio.Event()
        body: RequestBody = None
        if has_body:
            if length is not None and length <= SMALL_BODY:
                body = await read_body(receive)
                body_done.set()
            else:
                body = stream_body(receive, body_done)
        else:
            body_done.set()

        try:
            response = await self.upstreams[backend].send(
                scope["method"], self.target_url(scope, backend), upstream_headers, body
            )
        except UpstreamError as exc:
            await self.fail(send, scope, decision, exc)
            return

        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": client_response_headers(
                        response.headers, self.response_extras(decision)
                    ),
                }
            )
            await self.relay_body(response, receive, send, body_done)
        finally:
            await response.aclose()

    async def relay_body(
        self, response: UpstreamResponse, receive: Receive, send: Send, body_done: asyncio.Event
    ) -> None:
        try:
            chunk, more = await response.read()
        except UpstreamError as exc:
            raise UpstreamBodyError(f"backend failed mid-response: {exc}") from exc
        if not more:
            await send({"type": "http.response.body", "body": chunk, "more_body": False})
            return
        # A long response: watch for the client leaving so the upstream read stops too.
        watcher = (
            asyncio.ensure_future(wait_for_disconnect(receive, response))
            if body_done.is_set()
            else None
        )
        try:
            while more:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                try:
                    chunk, more = await response.read()
                except UpstreamError as exc:
                    if watcher is not None and watcher.done():
                        return  # the client left and we aborted the read
                    raise UpstreamBodyError(f"backend failed mid-response: {exc}") from exc
            await send({"type": "http.response.body", "body": chunk, "more_body": False})
        finally:
            if watcher is not None:
                watcher.cancel()

    async def fail(self, send: Send, scope: Scope, decision: Decision, exc: UpstreamError) -> None:
        backend = decision.backend
        logger.warning("backend %s failed (%s): %s", backend, exc.kind, exc)
        if exc.status == 504:
            title = "Gateway Timeout"
            detail = f"The {backend} backend did not answer in time."
        else:
            title = "Bad Gateway"
            detail = f"The {backend} backend could not be reached ({exc.kind})."
        await send_problem(
            send,
            exc.status,
            title,
            detail,
            slug=f"upstream-{exc.kind}",
            instance=scope.get("path"),
            headers=self._backend_headers[backend],
            backend=backend,
        )
