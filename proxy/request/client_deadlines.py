"""What a client connection owes the proxy, and by when: an idle connection closes after
``listen.keep_alive`` (from when it opened, or from its last answer), a request head must be
whole within ``limits.header_timeout`` of its first byte, and a request body must not pause
longer than ``limits.body_timeout`` between two reads. A late head or body gets ``408`` and
the connection closes. Nothing is owed while an answer is pending, or while the proxy itself
has paused reading.

One timer per connection keeps all of it, re-armed only when it fires or when a deadline
comes closer than the one it is armed for: a request costs a few attribute writes, not the
timer uvicorn arms and cancels per request for its keep-alive."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Any


class Owed(StrEnum):
    """What the connection is waiting for from its client."""

    NEXT_REQUEST = "next request"  # idle: the connection's keep-alive
    HEAD = "head"
    BODY = "body"


class ClientDeadlines:
    """Mixed into the listener's protocol (``protocol.py``), whose state it reads: the parser's
    position (``_in_head``, ``_in_body``), the answers pending (``cycle``, ``pipeline``) and
    the flow control (``flow``)."""

    header_timeout = 10.0
    body_timeout = 30.0

    # The protocol's, read here.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    timeout_keep_alive: float
    cycle: Any
    pipeline: Any
    flow: Any
    _in_head: bool

    def _start_deadlines(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._in_body = False
        self._last_read = self._head_began = self._idle_since = self.loop.time()
        self._wake_by(self._idle_since + self.timeout_keep_alive)

    def _wake_by(self, deadline: float) -> None:
        """Have the timer fire by ``deadline`` (it finds the next deadline when it fires)."""
        timer = self._timer
        if timer is not None:
            if self._due <= deadline:
                return
            timer.cancel()
        self._due = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _stop_deadlines(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _owed(self, now: float) -> tuple[Owed, float] | None:
        """What the client owes and by when; None while nothing is (an answer is pending)."""
        cycle = self.cycle
        if self._in_body:
            if not self.flow.read_paused and not getattr(cycle, "waiting_for_100_continue", False):
                return Owed.BODY, self._last_read + self.body_timeout
            # Paused by the proxy (a full buffer, a request pipelined behind another), or an
            # Expect: 100-continue not answered yet: the client may not send, so its clock
            # restarts at every look until it may.
            self._last_read = now
        if self.pipeline or (cycle is not None and not cycle.response_complete):
            return None
        if self._in_head:
            return Owed.HEAD, max(self._head_began, self._idle_since) + self.header_timeout
        return Owed.NEXT_REQUEST, self._idle_since + self.timeout_keep_alive

    def _on_timer(self) -> None:
        self._timer = None
        transport = self.transport
        if transport.is_closing() or transport.get_protocol() is not self:
            return  # closed, or handed over (a WebSocket tunnel keeps its own time)
        now = self.loop.time()
        owed = self._owed(now)
        if owed is None:
            # Looked at again after a while: the answer's end re-arms it sooner, a read too.
            self._wake_by(now + min(self.header_timeout, self.body_timeout) / 2)
            return
        what, deadline = owed
        if deadline > now:
            self._wake_by(deadline)
        elif what is Owed.NEXT_REQUEST:
            transport.close()
        else:
            timeout = self.header_timeout if what is Owed.HEAD else self.body_timeout
            self._time_out(what, f"the request {what} did not arrive within {timeout:g} s")

    def _time_out(self, what: Owed, reason: str) -> None:
        raise NotImplementedError  # the protocol refuses the request (408)
