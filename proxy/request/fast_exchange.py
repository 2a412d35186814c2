"""One request on the fast path, in callbacks: the downstream protocol's (this is its
``cycle``) and the upstream connection's (its response); no ASGI message, no timer, no task
unless it must wait (for a slot, a connection). As on the full path (``forwarder.py``): the
breaker, the slots, one retry on a new connection after a reused one was found closed, the
replay on ``from`` when ``to`` fails, the metrics, the 502/504/503 problems, the access log;
timeouts are ticks of the fast path's sweep. The answer's side: ``fast_relay.py``."""

from __future__ import annotations

import logging
from time import perf_counter, time
from typing import TYPE_CHECKING, Any, Protocol

from cutover.request.fast_relay import Answer, Relay, failure_answer, made
from cutover.request.lifecycle import Refusal, send_refusal
from cutover.request.metrics import ERROR, code_class
from cutover.request.slots import Overloaded, Slot, retry_after
from cutover.request.splitter import Decision
from cutover.types import RawHeaders, Scope
from cutover.upstream.base import UpstreamError, UpstreamReset
from cutover.upstream.connection import Connection
from cutover.upstream.http1 import IDEMPOTENT, Http1Upstream

if TYPE_CHECKING:
    from cutover.request.access_log import AccessLog
    from cutover.request.forwarder import Forwarder
    from cutover.request.metrics import Metrics

logger = logging.getLogger("cutover.forwarder")


class FastState(Protocol):
    """What an exchange reads of its fast path (``FastPath``)."""

    forwarder: Forwarder
    metrics: Metrics
    access_log: AccessLog | None
    tick: int
    inflight: set[FastExchange]

    def watch(self, exchange: FastExchange) -> None: ...

    def later(self, exchange: FastExchange, upstream: Http1Upstream, slot: Slot) -> None: ...


class FastExchange(Relay):
    __slots__ = (
        "admitted", "awaiting", "backend", "body", "breaker", "connection", "cut", "decision",
        "disconnected", "fallback", "fast", "length", "method", "more_body", "observed",
        "replay", "request_body", "response_complete", "scope", "seen", "sent_at", "since",
        "slot", "started", "target", "task", "upstream_headers", "wall",
    )  # fmt: skip

    def __init__(
        self, fast: FastState, protocol: Any, scope: Scope, decision: Decision,
        upstream_headers: RawHeaders, request_id: bytes, method: bytes, length: int,
    ) -> None:  # fmt: skip
        self.fast, self.protocol, self.transport = fast, protocol, protocol.transport
        self.scope, self.decision, self.method = scope, decision, method
        self.upstream_headers, self.request_id = upstream_headers, request_id
        query = scope["query_string"]
        self.target = scope["raw_path"] + b"?" + query if query else scope["raw_path"]
        self.head_only, self.keep_alive = method == b"HEAD", protocol.parser.should_keep_alive()
        self.started = perf_counter()
        self.wall = time()
        self.response_complete = self.disconnected = False
        self.more_body, self.body = True, bytearray() if length > 0 else b""
        self.length, self.awaiting, self.request_body = length, False, None
        self.reset_response()
        self.backend = decision.backend
        self.connection = self.breaker = self.fallback = self.slot = self.task = None
        self.named = self.upstream_transport = None
        self.admitted = self.replay = self.streaming = self.chunked = self.observed = False
        self.cut = False  # cut off at shutdown (FastPath.close)
        self.sent, self.seen, self.since, self.sent_at = 0, 0, 0, 0.0

    @property
    def message_event(self) -> FastExchange:
        return self  # uvicorn calls message_event.set() on news: the body's end, a disconnect

    def set(self) -> None:
        if self.disconnected:
            if not self.response_complete:
                self._client_left()
        elif self.awaiting and not self.more_body:  # the body is in: on to the backend
            self.awaiting = False
            self.start()

    def resume(self) -> None:
        """The client's socket drained: a paused stream goes on."""
        if self.streaming and not self.response_complete:
            self.flush(False)

    def start(self) -> None:
        forwarder = self.fast.forwarder
        decision = self.decision
        self.since = self.seen = self.fast.tick
        self.breaker = forwarder.admit(decision, self.scope["method"])
        self.admitted = self.breaker is not None
        length = self.length
        if length >= 0:
            self.request_body = bytes(self.body)
        self.fallback = decision.fallback_backend()
        self.replay = self.fallback is not None and forwarder.replay.can_replay(
            decision.route, decision.reason, self.scope["method"], max(length, 0), length > 0
        )
        self.fast.watch(self)
        self._go()

    def refused(self, refusal: Refusal) -> None:
        self.finish_with(made(send_refusal(answer := Answer(), refusal), answer))

    def _go(self) -> None:
        forwarder = self.fast.forwarder
        backend = self.backend = self.decision.backend
        upstream: Http1Upstream = forwarder.upstreams[backend]  # type: ignore[assignment]
        slot: Slot = forwarder.slots[backend]  # type: ignore[assignment]
        self.sent_at = perf_counter()
        if slot.take():
            self.slot = slot
            connection = upstream.pool.take_idle()
            if connection is not None:
                self.send(upstream, connection)
                return
        self.fast.later(self, upstream, slot)

    def send(self, upstream: Http1Upstream, connection: Connection) -> None:
        headers = self.fast.forwarder.hops.for_backend(self.backend, self.upstream_headers,
                                                       self.scope)  # fmt: skip
        connection.begin(self)  # type: ignore[arg-type]  # the response's side, duck-typed
        self.connection, self.upstream_transport = connection, connection.transport
        self.seen = self.fast.tick
        data = upstream.whole_request(self.method, self.target, headers, self.request_body)
        try:
            connection.write_soon(data)
        except UpstreamReset as exc:
            self.fail(exc)
            return
        connection.request_sent = True

    def wake(self) -> None:
        if not self.observed:
            if not self.status:
                return
            self.observed = True
            if not self._judge():
                return
        self.seen = self.fast.tick

    def fed(self) -> None:
        """A read ended inside the body: what came goes out (the head waits for body bytes)."""
        if not self.observed or not (self.streaming or self.chunks):
            return
        if self.streaming:
            self.flush(False)
        else:
            self.stream(self._client_headers())

    def finish(self) -> None:
        self.done = True
        if not self.observed:  # a HEAD's answer ends with its head
            self.observed = True
            if not self._judge():
                return
        self.connection = None
        if self.streaming:
            self.end_stream()
        else:
            self.respond(self._client_headers())
        self.upstream_transport = None
        self._end()

    def fail(self, error: UpstreamError) -> None:
        if self.done or self.response_complete:
            return
        connection, self.connection = self.connection, None
        self.upstream_transport = None
        if self.observed:  # the head was in (and counted), its body failed
            self.fast.metrics.upstream_error(self.backend, error.kind)
            logger.warning("%s backend: backend failed mid-response: %s", self.backend, error)
            if self.streaming:  # the head is out: the client's answer is cut off
                self.transport.close()
                self._end()
                return
            if self.replay:  # nothing went to the client yet: from answers instead
                self._retarget()
                return
            self.finish_with(self._failure(error))
            return
        if (
            not self.status
            and isinstance(error, UpstreamReset)
            and connection is not None
            and connection.reused
            and self.scope["method"] in IDEMPOTENT
        ):
            upstream: Http1Upstream = self.fast.forwarder.upstreams[self.backend]  # type: ignore[assignment]
            upstream.pool.drop_idle()
            self.reset_response()
            self.fast.later(self, upstream, self.slot)  # type: ignore[arg-type]  # held
            return
        self.no_answer(error)

    def _judge(self) -> bool:
        """The answer's head is in: counted; False when it is a failure of ``to`` to replay."""
        decision = self.decision
        self.fast.metrics.observe(decision.label, self.backend, decision.route,
                                  code_class(self.status), perf_counter() - self.sent_at,
                                  decision.cohort)  # fmt: skip
        if self.fallback is not None:
            failed = self.status in self.fast.forwarder.fallback_statuses
            if self.admitted:
                decision.judged = True
                self.breaker.record(not failed)  # type: ignore[union-attr]
            if failed and self.replay:
                connection, self.connection = self.connection, None
                self.upstream_transport = None
                if connection is not None:
                    connection.abandon()
                self._retarget()
                return False
        return True

    def no_answer(self, error: UpstreamError | Overloaded) -> None:
        fast, decision, backend = self.fast, self.decision, self.backend
        overloaded = isinstance(error, Overloaded)
        if not overloaded:
            fast.metrics.observe(decision.label, backend, decision.route, ERROR,
                                 perf_counter() - self.sent_at, decision.cohort)  # fmt: skip
            fast.metrics.upstream_error(backend, error.kind)
            logger.warning("backend %s failed (%s): %s", backend, error.kind, error)
        if self.fallback is not None:
            if self.admitted and not overloaded:
                decision.judged = True
                self.breaker.record(False)  # type: ignore[union-attr]
            if self.replay:
                self._retarget()
                return
        self.finish_with(self._failure(error))

    def _failure(self, error: UpstreamError | Overloaded) -> Answer:
        named = self.fast.forwarder.backend_headers[self.backend]
        retry = retry_after(self.fast.forwarder.limits)
        return failure_answer(error, self.backend, self.scope["path"], named, retry)

    def _retarget(self) -> None:
        """On to the migration's ``from`` after its ``to`` failed (``fallback``)."""
        if self.slot is not None:
            self.slot.release()
            self.slot = None
        decision = self.decision
        decision.backend, decision.fallback = self.fallback, True  # type: ignore[assignment]
        self.fallback, self.replay, self.observed = None, False, False
        self.reset_response()
        self._go()

    def _client_headers(self) -> RawHeaders:
        forwarder = self.fast.forwarder
        self.named = forwarder.backend_headers[self.backend][0][1]
        extras = forwarder.response_extras(self.decision)
        return forwarder.hops.response_headers(self.backend, self.headers, extras, self.scope)

    def finish_with(self, answer: Answer) -> None:
        self.write_answer(answer)
        self._end()

    def _end(self) -> None:
        self.response_complete = True
        self._settle()
        if not self.keep_alive:
            self.transport.close()
        self.protocol.on_response_complete()

    def _settle(self) -> None:
        fast = self.fast
        fast.inflight.discard(self)
        if self.slot is not None:
            self.slot.release()
            self.slot = None
        if self.admitted and not self.decision.judged:
            self.breaker.forget()  # type: ignore[union-attr]
        log = fast.access_log
        if log is not None:
            log.answered(self.scope, self.wall, perf_counter() - self.started, self.status,
                         self.sent, self.decision, self.request_id, self.named)  # fmt: skip

    def _client_left(self) -> None:
        self.response_complete = True
        connection, self.connection = self.connection, None
        self.upstream_transport = None
        if connection is not None:
            connection.abandon()
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if not self.streaming:
            self.status = 0  # no answer began (as the full path's log says)
        self._settle()
