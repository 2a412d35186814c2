"""uvicorn's httptools protocol, with bounds on the request head and the framing rules the
proxy enforces before a request reaches the app (README.md, "Request framing").

- Bounds: uvicorn has no limit on the URL or header size with httptools (its one option applies
  to h11). A URL over ``max_url`` bytes gets 414, a head over ``max_head`` bytes 431, as soon
  as the bound is crossed.
- Transfer-Encoding: ``chunked`` is the only coding implemented. Another coding before it gets
  501, a list that does not end in ``chunked`` 400, and so does any Transfer-Encoding in an
  HTTP/1.0 request (RFC 9112 §6.1, §6.3).
- Trailer fields of a chunked request are dropped, never merged into the header section that
  routing and every header rule read (RFC 9110 §6.5.1).
- Upgrade: llhttp stops at the head of a request it flags as an upgrade, and httptools skips
  that request's body. A request with a body is never upgraded: its body is read through a
  fresh parser and it goes to the app as an ordinary request. A bodiless WebSocket handshake
  hands the connection over (``ws_handoff``); after another bodiless upgrade request parsing
  goes on. ``CONNECT`` opens no tunnel: what followed its head is never parsed.
- HTTP/1.0 has no chunked coding: a response without a length goes to a 1.0 client
  close-delimited.
- A refusal is written after the responses to the requests before it on the connection, so
  every answer stays in its place, and the connection closes.
"""

from __future__ import annotations

import contextlib
from typing import Any, NoReturn

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cutover.request.client_deadlines import ClientDeadlines, Owed
from cutover.request.framing_rules import close_delimited, transfer_coding_problem
from cutover.request.ws_handoff import hand_over

REFUSALS = {
    400: b"HTTP/1.1 400 Bad Request\r\n",
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    414: b"HTTP/1.1 414 URI Too Long\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
    501: b"HTTP/1.1 501 Not Implemented\r\n",
}

# Heads that frame a body the way its client did: fed to a fresh parser, they make it read
# the body of a request httptools flagged as an upgrade (and skipped the body of).
_LENGTH_HEAD = b"POST / HTTP/1.1\r\ncontent-length: %d\r\n\r\n"
_CHUNKED_HEAD = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"


class Refused(Exception):
    """The request cannot be forwarded; raised inside a parser callback."""


class BoundedHttpToolsProtocol(ClientDeadlines, HttpToolsProtocol):
    """uvicorn's ``http`` option. A module-level class so worker processes can import it;
    ``configure`` sets the bounds and the client's deadlines in each process."""

    max_url = 8 * 1024
    max_head = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._refusal = 400
        self._reason: str | None = None
        self._codings: list[bytes] | None = None  # the request's Transfer-Encoding values
        self._upgrade_body: bytes | None = None  # a head framing an upgrade request's body
        self._reframing = False  # parsing such a head: the request already has its cycle
        self._ignore_input = False  # after a refusal, or after CONNECT's head
        self._pending_refusal: tuple[int, str] | None = None
        self._trailing = 0  # bytes of a chunked request read since its body last grew
        super().__init__(*args, **kwargs)

    # -- parser callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        # uvicorn's, inlined (it runs for every request).
        self.url = b""
        self.expect_100_continue = False
        self.headers = headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": headers,
            "state": self.app_state.copy(),
        }
        self._in_head = True
        self._head_began = self._last_read  # parsed in the read that brought its first byte
        self._wake_by(self._last_read + self.header_timeout)
        self._head_bytes = 0
        self._refusal = 400
        self._reason = None
        self._codings = None
        self._upgrade_body = None
        self._trailing = 0

    def _refuse(self, status: int, reason: str) -> NoReturn:
        self._refusal, self._reason = status, reason
        raise Refused(reason)

    def on_url(self, url: bytes) -> None:
        self.url += url  # uvicorn's on_url, inlined
        if len(self.url) > self.max_url:
            self._refuse(414, f"the request target is longer than {self.max_url} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.max_head:
            self._refuse(431, f"the request headers are larger than {self.max_head} bytes")
        if not self._in_head:
            return  # a trailer field: dropped, never merged into the header section
        # uvicorn's on_header, inlined (it runs for every field of every request), noting
        # the Transfer-Encoding values on the way.
        name = name.lower()
        if name == b"transfer-encoding":
            if self._codings is None:
                self._codings = [value]
            else:
                self._codings.append(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_read()
        if self._reframing:
            self._reframing = False
            return
        if self._codings is not None:
            problem = transfer_coding_problem(self._codings, self.parser.get_http_version())
            if problem is not None:
                self._refuse(*problem)
        if self.parser.should_upgrade():
            self._upgrade_body = self._body_head()
        super().on_headers_complete()
        if self.scope["http_version"] == "1.0":
            cycle = self.cycle
            if cycle is not None and cycle.scope is self.scope:  # not a WebSocket handshake
                cycle.send = close_delimited(cycle)  # type: ignore[method-assign]

    def _body_head(self) -> bytes | None:
        """For a request llhttp flagged as an upgrade: a head framing its body as the client
        did, or None when it has none (llhttp has checked the framing fields)."""
        if self._codings is not None:
            return _CHUNKED_HEAD
        for name, value in self.headers:
            if name == b"content-length":
                length = int(value)
                return _LENGTH_HEAD % length if length else None
        return None

    def _should_upgrade(self) -> bool:
        # A request with a body is not upgraded (RFC 9110 §7.8 lets a server ignore Upgrade):
        # it is forwarded as an ordinary request, Upgrade removed as hop-by-hop.
        return self._upgrade_body is None and super()._should_upgrade()

    def _head_read(self) -> None:
        self._in_head = False
        self._in_body = True  # until on_message_complete, at once for a request without one
        self._wake_by(self._last_read + self.body_timeout)

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    # -- connection ---------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._start_deadlines()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadlines()
        super().connection_lost(exc)

    def _time_out(self, what: Owed, reason: str) -> None:
        self._refusal = 408
        self.send_400_response(reason)

    def data_received(self, data: bytes) -> None:
        if self._ignore_input:
            return
        self._last_read = self.loop.time()
        continuing = self._in_head  # a head held by httptools until complete: count it
        size = len(data)
        cycle = self.cycle
        body_before = 0 if cycle is None else len(cycle.body)
        while data:
            try:
                self.parser.feed_data(data)
                data = b""
            except httptools.HttpParserUpgrade as upgrade:
                if self._should_upgrade():  # a WebSocket handshake: the rest is not HTTP
                    hand_over(self, data[upgrade.args[0] :])
                    return
                data = self._after_upgrade(data[upgrade.args[0] :])
            except httptools.HttpParserError as exc:
                reason = self._reason or f"Invalid HTTP request received: {exc}"
                self.logger.warning(reason)
                self.send_400_response(reason)
                return
        if continuing and self._in_head and not self.transport.is_closing():
            self._head_bytes += size
            if self._head_bytes > self.max_head:
                self._refusal = 414 if len(self.url) > self.max_url else 431
                self.send_400_response("the request head is too large")
        elif self._codings is not None and self.cycle is not None and self.cycle.more_body:
            # httptools holds a trailer field (or a chunk extension) until it ends: bound what a
            # chunked request sends beside its body (with the head, in the read that began it).
            began = cycle is not self.cycle
            grown = len(self.cycle.body) - (0 if began else body_before)
            self._trailing = (0 if began or grown else self._trailing) + size - grown
            if self._trailing > self.max_head and not self.transport.is_closing():
                self._refusal = 431
                self.send_400_response("the chunked framing or trailer fields are too large")

    def _after_upgrade(self, rest: bytes) -> bytes:
        """After a request httptools flagged as an upgrade (it stopped parsing at the end of
        its head): the bytes to parse next."""
        cycle = self.cycle
        if self.scope["method"] == "CONNECT":
            # llhttp takes what follows for tunnel bytes. There is no tunnel: the app refuses
            # CONNECT, then the connection closes, and nothing after the head is parsed.
            self._ignore_input = True
            cycle.keep_alive = False
            return b""
        head = self._upgrade_body
        if head is not None:
            # httptools skipped the body and reported the request complete: a fresh parser
            # reads the body into the same cycle, then the requests after it.
            self._upgrade_body = None
            cycle.more_body = True
            self.parser = httptools.HttpRequestParser(self)
            with contextlib.suppress(AttributeError):  # httptools < 0.6.3 has no leniencies
                self.parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn
            self._reframing = True
            self.parser.feed_data(head)
        return rest

    def on_response_complete(self) -> None:
        # uvicorn's, with the connection's one timer for its keep-alive (client_deadlines.py).
        last = not self.pipeline
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_since = self.loop.time()
            self._wake_by(self._idle_since + self.timeout_keep_alive)
        if last and self._pending_refusal is not None and not self.transport.is_closing():
            self._write_refusal(*self._pending_refusal)

    def send_400_response(self, msg: str) -> None:
        """Refuse the request being parsed (with ``self._refusal``), as soon as every request
        before it on this connection has its response; then close the connection."""
        self._ignore_input = True
        reason = self._reason or msg
        cycle = self.cycle
        waiting = bool(self.pipeline)
        if cycle is not None and not cycle.response_complete:
            if cycle.more_body:
                # The error is in this request's body: it must not reach the backend.
                queued = [entry for entry in self.pipeline if entry[0] is cycle]
                for entry in queued:
                    self.pipeline.remove(entry)
                cycle.disconnected = True
                cycle.message_event.set()
                if cycle.response_started:  # the backend answered already: no refusal after it
                    self.transport.close()
                    return
                waiting = waiting or bool(queued)
            else:
                waiting = True
        if waiting:
            self._pending_refusal = (self._refusal, reason)
        else:
            self._write_refusal(self._refusal, reason)

    def _write_refusal(self, status: int, reason: str) -> None:
        body = reason.encode("ascii", "replace")
        self.transport.write(
            b"".join(
                [
                    REFUSALS[status],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()
