"""The answer's side of a fast exchange (``fast_exchange.py``): the client's head built and
written with the body in one write, framed as the backend framed it (by its length, else
chunked, as uvicorn's cycle frames an answer without a length), the request id stamped; a
large answer streamed, the backend paused while the client's socket is full; and the
proxy's own answers (problems, refusals), made by the same functions the full path sends
them with."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from cutover.request.headers import BACKEND_HEADER
from cutover.request.problem import send_overloaded, send_upstream_failure
from cutover.request.slots import Overloaded
from cutover.types import Message, RawHeaders
from cutover.upstream.base import UpstreamError
from cutover.upstream.framing import LAST_CHUNK

_BODILESS = (204, 304)
_CHUNKED = (b"transfer-encoding", b"chunked")


class Answer:
    """An ASGI ``send`` that keeps the proxy's own answer."""

    __slots__ = ("body", "headers", "status")

    def __init__(self) -> None:
        self.status, self.headers, self.body = 0, [], b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status, self.headers = message["status"], list(message.get("headers", ()))
        else:
            self.body += message.get("body", b"")


def made(coroutine: Coroutine[Any, Any, None], answer: Answer) -> Answer:
    """Run a coroutine that only sends to ``answer`` (so it never suspends) to its end."""
    try:
        coroutine.send(None)
    except StopIteration:
        return answer
    coroutine.close()
    raise RuntimeError("an answer of the proxy's own waited for something")


def failure_answer(
    error: UpstreamError | Overloaded, backend: str, path: str, named: RawHeaders, retry: int
) -> Answer:
    """The 502/504 of a backend that gave no usable answer, the 503 of one whose slots
    stayed taken (``retry``: its Retry-After), as the full path answers them."""
    answer = Answer()
    if isinstance(error, Overloaded):
        return made(send_overloaded(answer, backend, retry, named), answer)
    return made(send_upstream_failure(answer, error, backend, path, named), answer)


def has_length(headers: RawHeaders) -> bool:
    for name, _ in headers:  # noqa: SIM110 - a loop: no generator per answer
        if name == b"content-length":
            return True
    return False


def status_line(status: int) -> bytes:
    return STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status


class Relay:
    """A fast exchange's answer: what the upstream connection fills in (``Http1Response``'s
    side of it: ``status``, ``headers``, ``chunks``...), and what is written to the client."""

    __slots__ = (
        "buffered", "chunked", "chunks", "done", "head_bytes", "head_only", "headers",
        "keep_alive", "named", "paused", "protocol", "request_id", "sent", "status",
        "streaming", "transport", "until_eof", "upstream_transport",
    )  # fmt: skip

    @property
    def response_started(self) -> bool:
        """Whether the client has had the answer's head and not all of it (uvicorn's cycle's)."""
        return self.streaming

    def reset_response(self) -> None:
        self.status = self.head_bytes = self.buffered = 0
        self.headers: RawHeaders = []
        self.chunks: list[bytes] = []
        self.done = self.until_eof = self.paused = False

    def respond(self, headers: RawHeaders) -> None:
        """The whole answer (its body in ``chunks``): head and body in one write."""
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        status = self.status
        if self.head_only:
            self._write(status, headers, b"", 0)  # its length is the GET's, as the backend said
        elif status in _BODILESS:
            self._write(status, [h for h in headers if h[0] != b"content-length"], b"", 0)
        elif has_length(headers):
            self._write(status, headers, body, len(body))
        else:
            headers.append(_CHUNKED)
            framed = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else LAST_CHUNK
            self._write(status, headers, framed, len(body))

    def stream(self, headers: RawHeaders) -> None:
        """The head now, the body as it comes (``flush``)."""
        self.streaming = True
        self.chunked = not has_length(headers)
        if self.chunked:
            headers.append(_CHUNKED)
        self._write(self.status, headers, b"", 0)
        self.flush(False)

    def flush(self, force: bool) -> None:
        """What the backend sent since, to the client; unless ``force``, not while the
        client's socket is full (``resume`` writes it): meanwhile the backend is read on
        until the connection's high-water mark pauses it, so the client's socket never
        waits for the backend when it drains."""
        upstream = self.upstream_transport
        if not force and self.protocol.flow.write_paused:
            return
        chunks = self.chunks
        if chunks:
            data = b"".join(chunks)
            chunks.clear()
            self.buffered = 0
            self.sent += len(data)
            self.transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)
        if self.paused and upstream is not None:
            self.paused = False
            upstream.resume_reading()

    def end_stream(self) -> None:
        self.flush(True)
        if self.chunked:
            self.transport.write(LAST_CHUNK)

    def write_answer(self, answer: Answer) -> None:
        """The proxy's own answer (its headers frame it)."""
        self.status = answer.status
        for name, value in answer.headers:
            if name == BACKEND_HEADER:
                self.named = value
        self._write(answer.status, answer.headers, answer.body, len(answer.body))

    def _write(self, status: int, headers: RawHeaders, payload: bytes, size: int) -> None:
        """The head, the request id stamped, and ``payload`` (``size`` bytes of body)."""
        lines = [status_line(status)]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        lines += (b"x-request-id: ", self.request_id, b"\r\n")
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        if payload and not self.head_only:
            lines.append(payload)
            self.sent += size
        self.transport.write(b"".join(lines))
