"""Reading a client's request body: whole when small, as a stream otherwise, and never
more than ``limits.max_request_body``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from cutover.types import RawHeaders, Receive


class ClientDisconnected(Exception):
    """The client went away before its request was answered."""


class BadRequest(Exception):
    """The request cannot be forwarded as it stands (answered with 400)."""


class BodyTooLarge(Exception):
    """The request body is over ``limits.max_request_body`` (answered with 413)."""


def request_length(headers: RawHeaders) -> tuple[int | None, bool]:
    """(Content-Length, has a body at all) from the request headers."""
    length = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                value = value.strip(b" \t")  # OWS is not part of a field value (RFC 9110 §5.5)
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


class BodyStream:
    """The request body as an async iterator for the upstream client, counting bytes."""

    def __init__(self, receive: Receive, limit: int | None) -> None:
        self.receive = receive
        self.limit = limit
        self.size = 0
        self.too_large = False
        self.done = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            body = message.get("body", b"")
            self.size += len(body)
            if self.limit is not None and self.size > self.limit:
                self.too_large = True
                raise BodyTooLarge
            if body:
                yield body
            if not message.get("more_body", False):
                self.done.set()
                return
