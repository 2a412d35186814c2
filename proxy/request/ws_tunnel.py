"""One WebSocket's two connections, spliced: the client's (``ClientEnd``, handed over by the
HTTP protocol at the handshake's head) and the backend's (``BackendEnd``, a connection of its
own). Bytes go through as they arrive, so extensions, fragmentation, ping/pong and close
frames pass exactly; each direction's ``FrameCursor`` knows where frames begin, so a close
frame of the proxy's own (shutdown, rollback, a backend gone) goes between two frames."""

from __future__ import annotations

import asyncio
from typing import Any

import httptools

from cutover.request.request_id import REQUEST_ID_HEADER
from cutover.request.ws_handshake import close_frame, response_head
from cutover.types import RawHeaders
from cutover.upstream.base import UpstreamError, UpstreamProtocolError, UpstreamReset

# Bytes a client may send before the backend's 101 (RFC 6455 §4.1 says none): reading
# pauses beyond this.
PENDING_LIMIT = 64 * 1024
# A backend's refusal of a handshake is read whole to be relayed; larger ones are a 502.
REFUSAL_BODY_LIMIT = 1024 * 1024
_CLOSE_OPCODE = 0x8


class FrameCursor:
    """Where the frames of one direction's bytes begin (RFC 6455 §5.2): only frame headers
    are read, a payload is skipped by its length."""

    def __init__(self) -> None:
        self.header = bytearray()
        self.left = 0  # payload bytes of the current frame still to come
        self.close_seen = False
        self.close_code: int | None = None  # the first close frame's status code, if any
        self._code = bytearray()  # its first payload bytes, as they come
        self._code_mask: bytes | None = None  # capturing the code: the mask (b"": none)

    @property
    def at_boundary(self) -> bool:
        return self.left == 0 and not self.header

    def advance(self, data: bytes, *, to_boundary: bool = False) -> int:
        """Consume ``data``, or with ``to_boundary`` only up to the first frame boundary;
        returns the bytes consumed."""
        i, n = 0, len(data)
        while i < n:
            if self.left:
                take = min(self.left, n - i)
                if self._code_mask is not None and len(self._code) < 2:
                    self._read_code(data[i : i + min(take, 2 - len(self._code))])
                self.left -= take
                i += take
                continue
            if to_boundary and not self.header:
                return i
            self.header.append(data[i])
            i += 1
            self._read_header()
        return i

    def _read_header(self) -> None:
        h = self.header
        if len(h) < 2:
            return
        length = h[1] & 0x7F
        need = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if h[1] & 0x80 else 0)
        if len(h) < need:
            return
        if length == 126:
            length = int.from_bytes(h[2:4], "big")
        elif length == 127:
            length = int.from_bytes(h[2:10], "big")
        if h[0] & 0x0F == _CLOSE_OPCODE and not self.close_seen:
            self.close_seen = True
            # The code is the payload's first two bytes (RFC 6455 §5.5.1), masked from a client.
            self._code_mask = bytes(h[need - 4 : need]) if h[1] & 0x80 else b""
        else:
            self._code_mask = None
        self.left = length
        h.clear()

    def _read_code(self, data: bytes) -> None:
        for byte in data:
            mask = self._code_mask or b""
            self._code.append(byte ^ mask[len(self._code) % 4] if mask else byte)
        if len(self._code) == 2:
            self.close_code = int.from_bytes(self._code, "big")
            self._code_mask = None


class Pipe:
    """One direction: bytes to ``sink``, and the end of it with a close frame of our own
    (masked towards a backend: the proxy is its client, RFC 6455 §5.3)."""

    def __init__(self, sink: asyncio.BaseTransport, *, masked: bool) -> None:
        self.sink: Any = sink
        self.masked = masked
        self.cursor = FrameCursor()
        self.ending: int | None = None
        self.ended = False
        self.carried = 0  # bytes written to the sink

    def carry(self, data: bytes) -> None:
        if self.ended:
            return
        if self.ending is None:
            self.cursor.advance(data)
            self.sink.write(data)
            self.carried += len(data)
            return
        used = self.cursor.advance(data, to_boundary=True)
        self.sink.write(data[:used])
        self.carried += used
        if self.cursor.at_boundary:
            self._finish()

    def end(self, code: int, *, source_gone: bool = False) -> None:
        """Close the sink with ``code`` at the next frame boundary (at once when the source
        is gone: the current frame will not finish). No frame once a close went this way."""
        if self.ended:
            return
        self.ending = code
        if self.cursor.at_boundary or source_gone:
            self._finish()

    def _finish(self) -> None:
        self.ended = True
        if self.cursor.at_boundary and not self.cursor.close_seen and self.ending is not None:
            self.sink.write(close_frame(self.ending, masked=self.masked))
        self.sink.close()


class ClientEnd(asyncio.Protocol):
    """The client's connection after its handshake head (uvicorn's ``ws`` protocol class,
    installed by ``ws_handoff``). Registered in uvicorn's connections, so a drain waits for
    it up to the grace."""

    def __init__(self, server_state: Any) -> None:
        self.connections = server_state.connections
        self.transport: Any = None
        self.pending = bytearray()
        self.pipe: Pipe | None = None  # to the backend, once spliced
        self.lost = asyncio.Event()
        self._status = 500
        self._headers: RawHeaders = []
        # The session as the access log tells it, filled in by the forwarder.
        self.request_id: bytes | None = None  # stamped on every answer to the handshake
        self.status = 0  # the handshake's answer: 101, a refusal's status (0: none yet)
        self.backend: str | None = None  # the backend that answered it
        self.sent = 0  # bytes sent to the client after the 101
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.carry(data)
            return
        self.pending += data
        if len(self.pending) > PENDING_LIMIT:
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.lost.set()
        if self.pipe is not None and not self.pipe.ended:
            self.pipe.ended = True
            self.pipe.sink.close()

    def pause_writing(self) -> None:
        if self.pipe is not None:
            self.pipe.sink.pause_reading()

    def resume_writing(self) -> None:
        if self.pipe is not None:
            self.pipe.sink.resume_reading()

    def shutdown(self) -> None:
        """uvicorn's drain: an open socket runs on until the grace ends (then 1001)."""

    def splice(self, backend: asyncio.BaseTransport) -> None:
        self.pipe = Pipe(backend, masked=True)
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self.pipe.carry(data)
        self.transport.resume_reading()

    async def respond(self, message: dict[str, Any]) -> None:
        """An ASGI ``send`` for an answer instead of a 101: written with ``connection:
        close``, then the connection closes (nothing after the handshake is parsed)."""
        if message["type"] == "http.response.start":
            self._status, self._headers = message["status"], list(message.get("headers", ()))
            self.status = self._status
            if self.request_id is not None:
                self._headers.append((REQUEST_ID_HEADER, self.request_id))
        elif message["type"] == "http.response.body" and not self.transport.is_closing():
            headers = [(n, v) for n, v in self._headers if n.lower() != b"connection"]
            head = response_head(self._status, [*headers, (b"connection", b"close")])
            self.transport.write(head + message.get("body", b""))
            self.transport.close()


class BackendEnd(asyncio.Protocol):
    """The proxy's connection to the backend: the handshake's answer parsed (``head``
    resolves at a 101's head or a refusal's end), then bytes to the client."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.status = 0
        self.headers: RawHeaders = []
        self.body = bytearray()
        self.rest = b""  # what followed the 101's head: the backend's first frames
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pipe: Pipe | None = None  # to the client, once spliced
        self.client: ClientEnd | None = None
        self.lost = asyncio.Event()
        self._headers_done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        if self.head.done():
            return
        self.body += body
        if len(self.body) > REFUSAL_BODY_LIMIT:
            self._resolve(UpstreamProtocolError("the answer to the handshake is over 1 MiB"))

    def on_message_complete(self) -> None:
        if self.status != 101:
            self._resolve(None)

    def _resolve(self, error: UpstreamError | None) -> None:
        if self.head.done():
            return
        if error is None:
            self.head.set_result(None)
        else:
            self.head.set_exception(error)

    def data_received(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.carry(data)
            return
        if self.head.done():
            return  # a whole refusal is read: what follows is never used
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.rest = data[upgrade.args[0] :]
            self._resolve(None)
        except httptools.HttpParserError as exc:
            self._resolve(UpstreamProtocolError(f"malformed answer to the handshake: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        if self._headers_done and self.status != 101:
            self._resolve(None)  # a body delimited by the close
        else:
            self._resolve(UpstreamReset("the backend closed the connection before answering"))

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.transport.resume_reading()

    def splice(self, client: ClientEnd) -> None:
        self.client = client
        self.pipe = Pipe(client.transport, masked=False)
        if self.rest:
            data, self.rest = self.rest, b""
            self.pipe.carry(data)
