"""The access log: one line per request and per WebSocket session, written off the request
path. The request path only appends a flat tuple of the request's fields (``record``,
``session``) to a bounded deque; a thread takes what is there every ``interval``, formats it
(``access_format.py``) and writes it in one write. When the deque is full the line is
dropped and counted (``cutover_access_log_dropped_total``): a slow disk never slows a
request.

Rotation: ``reopen()`` (on SIGHUP, ``cutover.ops.gateway``) makes the writer open the path
again before its next write, so logrotate's ``postrotate`` sends SIGHUP after moving the
file."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable
from pathlib import Path
from typing import BinaryIO

from prometheus_client import Counter

from cutover.config import AccessLogConfig
from cutover.request.access_format import FORMATS, Entry, entry
from cutover.request.headers import BACKEND_HEADER
from cutover.request.request_id import REQUEST_ID_HEADER
from cutover.request.splitter import Decision
from cutover.types import Message, Scope, Send

logger = logging.getLogger("cutover.access_log")

INTERVAL = 0.2  # seconds between two writes: a line shows within this
CLOSE_TIMEOUT = 5.0  # seconds for the last lines at shutdown
WARN_EVERY = 60.0  # seconds between two warnings about a failing write


class Meter:
    """A request's ``send``: stamps its ``X-Request-Id`` on the answer, and notes the
    status, the answer's headers and the body bytes sent, for its access log line."""

    __slots__ = ("backend", "header", "send", "sent", "status")

    def __init__(self, send: Send, request_id: bytes) -> None:
        self.send = send
        self.header = (REQUEST_ID_HEADER, request_id)
        self.status = 0
        self.sent = 0
        self.backend: bytes | None = None  # the answer's X-Cutover-Backend

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.body":
            self.sent += len(message.get("body", b""))
        elif kind == "http.response.start":
            headers = [*message["headers"], self.header]
            message["headers"] = headers
            self.status = message["status"]
            for name, value in reversed(headers):  # it is among the last few
                if name == BACKEND_HEADER:
                    self.backend = value
                    break
        return self.send(message)


def open_log(path: Path) -> BinaryIO:
    """``path`` opened to append, unbuffered (each write is one ``write(2)``)."""
    return open(path, "ab", buffering=0)


class AccessLog:
    def __init__(
        self,
        config: AccessLogConfig,
        dropped: Counter,
        *,
        stream: BinaryIO | None = None,
        interval: float = INTERVAL,
    ) -> None:
        """Opens ``config.path`` (OSError when it cannot); ``stream`` replaces stdout."""
        self.capacity = config.queue
        self.dropped = dropped
        self.interval = interval
        self.path = None if config.to_stdout else Path(config.path)
        self._format = FORMATS[config.format]
        self._owned = self.path is not None
        self._out: BinaryIO = (
            open_log(self.path) if self.path is not None else stream or sys.stdout.buffer
        )
        self._entries: deque[Entry] = deque()
        self._reopen = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cutover-access-log", daemon=True)
        self._warned = -WARN_EVERY

    # -- the request path --------------------------------------------------------------

    def record(
        self, scope: Scope, started: float, duration: float, meter: Meter,
        decision: Decision | None,
    ) -> None:  # fmt: skip
        """One HTTP request's line (``meter``: its ``send``)."""
        self.answered(scope, started, duration, meter.status, meter.sent, decision,
                      meter.header[1], meter.backend)  # fmt: skip

    def answered(
        self, scope: Scope, started: float, duration: float, status: int, sent: int,
        decision: Decision | None, request_id: bytes, backend: bytes | None,
    ) -> None:  # fmt: skip
        """One HTTP request's line from its fields (the fast path has no ``Meter``)."""
        if len(self._entries) >= self.capacity:
            self.dropped.inc()
            return
        self._entries.append(entry(scope, started, duration, status, sent, decision,
                                   request_id, backend))  # fmt: skip

    def session(
        self,
        scope: Scope,
        *,
        started: float,
        duration: float,
        status: int,
        sent: int,
        decision: Decision | None,
        request_id: bytes,
        backend: str | None,
        close_code: int | None,
    ) -> None:
        """One WebSocket session's line, at its end: ``started`` (Unix seconds) at the
        handshake, ``status`` 101 or the handshake's refusal, ``sent`` the bytes of the
        messages sent to the client, ``backend`` the one that took it (None: none did),
        ``close_code`` how it closed."""
        if len(self._entries) >= self.capacity:
            self.dropped.inc()
            return
        name = None if backend is None else backend.encode("ascii")
        self._entries.append(entry(scope, started, duration, status, sent, decision,
                                   request_id, name, close_code))  # fmt: skip

    def reopen(self) -> None:
        """Open the file again before the next write (after logrotate moved it)."""
        self._reopen = True

    # -- the writer thread -------------------------------------------------------------

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    async def aclose(self) -> None:
        """Write what is queued, stop the thread, close the file."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(CLOSE_TIMEOUT)
        else:
            self.write_pending()
        if self._owned:
            self._out.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write_pending()
        self.write_pending()

    def write_pending(self) -> int:
        """Format and write every queued line; returns how many were written."""
        if self._reopen:
            self._reopen = False
            self._reopen_file()
        entries = self._entries
        lines: list[str] = []
        for _ in range(len(entries)):
            try:
                entry = entries.popleft()
            except IndexError:  # close() drained it from another thread
                break
            try:
                lines.append(self._format(entry))
            except Exception:
                logger.exception("an access log line could not be formatted")
        if not lines:
            return 0
        try:
            self._out.write("".join(lines).encode("utf-8", "replace"))
            self._out.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self.dropped.inc(len(lines))
            now = time.monotonic()
            if now - self._warned >= WARN_EVERY:
                self._warned = now
                logger.warning("access log lines lost: writing %s failed: %s",
                               self.path or "stdout", exc)  # fmt: skip
            return 0
        return len(lines)

    def _reopen_file(self) -> None:
        if self.path is None:
            return
        try:
            fresh = open_log(self.path)
        except OSError as exc:
            logger.error("access log: cannot reopen %s (%s); writing to the old file",
                         self.path, exc.strerror or exc)  # fmt: skip
            return
        old, self._out = self._out, fresh
        old.close()
        logger.info("access log reopened: %s", self.path)
