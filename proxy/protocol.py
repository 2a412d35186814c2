"""uvicorn's httptools protocol with bounds on the request head.

uvicorn has no limit on the URL or header size with httptools (its one option applies to
h11), so a client could make the proxy buffer megabytes of head. This refuses a URL over
``max_url`` bytes with 414 and a head over ``max_head`` bytes with 431, as soon as the bound
is crossed, and closes the connection.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REFUSALS = {
    400: b"HTTP/1.1 400 Bad Request\r\n",
    414: b"HTTP/1.1 414 URI Too Long\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}


class HeadTooLarge(Exception):
    """The request line or headers crossed a bound; raised inside a parser callback."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``http`` option. A module-level class so worker processes can import it;
    ``configure`` sets the bounds in each process."""

    max_url = 8 * 1024
    max_head = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._refusal = 400
        super().__init__(*args, **kwargs)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._refusal = 400

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_url:
            self._refusal = 414
            raise HeadTooLarge(f"the request target is longer than {self.max_url} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.max_head:
            self._refusal = 431
            raise HeadTooLarge(f"the request headers are larger than {self.max_head} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        # httptools holds a header value until it is complete, so count what arrives
        # while a head that began earlier is still unfinished.
        continuing = self._in_head
        super().data_received(data)
        if continuing and self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head:
                self._refusal = 414 if len(self.url) > self.max_url else 431
                self.send_400_response("the request head is too large")

    def send_400_response(self, msg: str) -> None:
        body = msg.encode("ascii", "replace")
        self.transport.write(
            b"".join(
                [
                    REFUSALS[self._refusal],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()


def configure(max_url: int, max_head: int) -> type[BoundedHttpToolsProtocol]:
    """Set this process's bounds; returns the class for uvicorn's ``http`` option."""
    BoundedHttpToolsProtocol.max_url = max_url
    BoundedHttpToolsProtocol.max_head = max_head
    return BoundedHttpToolsProtocol
