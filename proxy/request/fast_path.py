"""The fast path: requests that need nothing but routing and relaying are answered from the
downstream protocol's callbacks (``fast_protocol.py``), without uvicorn's ASGI cycle, by a
``FastExchange`` each.

Taken: a request over HTTP/1.1 without a body or with one of at most ``SMALL_BODY`` bytes by
Content-Length (read whole, then sent with its head), its target a path without percent-
escapes, neither an upgrade nor ``Expect`` nor behind an unanswered request on its
connection, when every backend is served by Cutover's own HTTP/1.1 client. Then, after the
same refusal rules and the same split as the full path, the request leaves the fast path
when it is refused, sampled for the dual run (any request of a migration or route with
``shadow``), or its Host makes it unforwardable: the full path (``app.py``,
``forwarder.py``) answers those, with nothing of them done twice. Everything else a request
meets on the full path it meets here, in the same functions: the trusted proxies, the
request id, the cohorts and the weight, the deprecation gate and the usage count, the header
rules both ways, the breaker, the slots, the replay, the metrics and the access log.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from cutover.request.body import BadRequest
from cutover.request.fast_exchange import FastExchange
from cutover.request.fast_relay import Answer
from cutover.request.lifecycle import Refusal
from cutover.request.request_id import adopt_request_id
from cutover.request.slots import Overloaded, Slot, wait_for_slot
from cutover.request.splitter import Decision, Splitter
from cutover.types import Scope
from cutover.upstream.base import UpstreamError, UpstreamReset, UpstreamTimeout
from cutover.upstream.http1 import Http1Upstream

if TYPE_CHECKING:
    from cutover.config import Settings
    from cutover.request.access_log import AccessLog
    from cutover.request.forwarder import Forwarder
    from cutover.request.metrics import Metrics

# The methods taken, by their bytes (CONNECT and TRACE are refused, by the full path).
FAST_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
NO_LENGTH = -1  # a request without Content-Length
# Bodies up to this size (by Content-Length) are read whole and sent with the head; a larger
# one streams, on the full path.
SMALL_BODY = 64 * 1024
TICK = 0.1  # seconds between two sweeps of the exchanges in flight, for their timeouts
ANSWERED_POLL = 0.01  # seconds between two looks at the exchanges a drain waits for


class FastApp(Protocol):
    """What the fast path reads of the proxy's app (``CutoverApp``), at every request: a
    reload replaces its parts."""

    settings: Settings
    splitter: Splitter
    forwarder: Forwarder
    metrics: Metrics
    access_log: AccessLog | None

    def gate(self, scope: Scope, decision: Decision) -> Refusal | None: ...


class FastPath:
    def __init__(self, app: FastApp) -> None:
        self.app = app
        self.forwarder = app.forwarder
        self.metrics = app.metrics
        self.access_log = app.access_log
        self.inflight: set[FastExchange] = set()
        self.tick = 0
        self.taken = 0  # requests the fast path answered (tests and benchmarks read it)
        self._sweep: asyncio.TimerHandle | None = None
        self._adopted: Forwarder | None = None
        self.enabled = False
        self.read_timeout = 0.0
        self._read_ticks = 0
        self._total_ticks: int | None = None

    def _adopt(self, forwarder: Forwarder) -> None:
        """What a config decides for the fast path: whether it runs, its timeouts in ticks."""
        self._adopted = forwarder
        self.enabled = all(isinstance(u, Http1Upstream) for u in forwarder.upstreams.values())
        timeouts = self.app.settings.timeouts
        self.read_timeout = timeouts.read
        # One tick more than the timeout: a timeout never fires early, at most 0.2 s late.
        self._read_ticks = math.ceil(timeouts.read / TICK) + 1
        total = timeouts.total
        self._total_ticks = None if total is None else math.ceil(total / TICK) + 1

    def begin(self, protocol: Any, scope: Scope, method: bytes, length: int) -> FastExchange | None:
        """Take the request whose head ``protocol`` just parsed (``scope`` complete; its
        Content-Length or ``NO_LENGTH``), or None: the full path answers it (nothing of it
        was done). A request with a body goes upstream once the body is in. The protocol
        offers only what ``refusals.refuse`` lets through (a method of ``FAST_METHODS``,
        HTTP/1.1, an origin-form target), so it is not asked again here."""
        app = self.app
        forwarder = self.forwarder = app.forwarder
        if forwarder is not self._adopted:
            self._adopt(forwarder)
        limit = forwarder.limits.max_request_body
        if (
            not self.enabled
            or length > SMALL_BODY
            or (limit is not None and length > limit)  # the full path answers 413
        ):
            return None
        peers = forwarder.hops.peers
        if peers is not None:
            peers.resolve(scope)
        decision = app.splitter.decide(scope["path"], scope["method"], scope["headers"],
                                       scope["client"], scope["query_string"])  # fmt: skip
        if decision.shadow is not None:
            return None
        request_id = adopt_request_id(scope)
        try:
            headers = forwarder.hops.request_headers(scope)
        except BadRequest:
            return None
        self.metrics = app.metrics
        self.access_log = app.access_log
        exchange = FastExchange(self, protocol, scope, decision, headers, request_id, method,
                                length)  # fmt: skip
        self.taken += 1
        refusal = app.gate(scope, decision)
        if refusal is not None:
            exchange.refused(refusal)  # what comes of its body is not read into it
        elif length > 0:
            exchange.awaiting = True  # started by set(), at the body's end
        else:
            exchange.start()
        return exchange

    # -- timeouts -----------------------------------------------------------------

    def watch(self, exchange: FastExchange) -> None:
        self.inflight.add(exchange)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(TICK, self.sweep)

    def sweep(self) -> None:
        """Every ``TICK`` while exchanges are in flight: those past a timeout expire."""
        self.tick = tick = self.tick + 1
        read, total = self._read_ticks, self._total_ticks
        for exchange in list(self.inflight):
            waiting = exchange.observed or exchange.connection is not None
            if waiting and tick - exchange.seen > read:
                seconds = f"{self.read_timeout:g}"
                expire(exchange, UpstreamTimeout(f"no answer from the backend in {seconds} s"))
            elif total is not None and not exchange.observed and tick - exchange.since > total:
                expire(exchange, UpstreamTimeout("timeouts.total"))
        self._sweep = (
            asyncio.get_running_loop().call_later(TICK, self.sweep) if self.inflight else None
        )

    def later(self, exchange: FastExchange, upstream: Http1Upstream, slot: Slot) -> None:
        """The exchange goes on once a slot is free and a connection is made (a task: the
        one wait of the fast path, kept among the server's tasks, which the drain awaits)."""
        task = asyncio.get_running_loop().create_task(send_later(exchange, upstream, slot))
        exchange.task = task
        tasks = exchange.protocol.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def close(self) -> None:
        """At shutdown, after the drain: what is still in flight is cut off as uvicorn cuts
        its requests when the grace runs out (500 when nothing was sent, else the connection
        closed), each marked ``cut``."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for exchange in list(self.inflight):
            exchange.cut = True
            if exchange.streaming:
                exchange.fail(UpstreamReset("cut off at shutdown"))
                continue
            connection, exchange.connection = exchange.connection, None
            if connection is not None:
                connection.abandon()
            if exchange.task is not None:
                exchange.task.cancel()
                exchange.task = None
            exchange.keep_alive = False
            exchange.finish_with(grace_cut())


def expire(exchange: FastExchange, error: UpstreamTimeout) -> None:
    """Past a timeout: the backend is given up on."""
    if exchange.connection is not None:
        exchange.connection.fail(error)  # which calls the exchange's fail()
    elif exchange.task is not None:
        exchange.task.cancel()
        exchange.task = None
        exchange.no_answer(error)


async def send_later(exchange: FastExchange, upstream: Http1Upstream, slot: Slot) -> None:
    if exchange.slot is None:
        if not await wait_for_slot(slot, exchange.fast.forwarder.limits.queue_timeout):
            exchange.task = None
            exchange.no_answer(Overloaded(exchange.backend))
            return
        exchange.slot = slot
        exchange.sent_at = perf_counter()
    try:
        connection = await upstream.pool.acquire()
    except UpstreamError as exc:
        exchange.task = None
        exchange.no_answer(exc)
        return
    exchange.task = None
    exchange.send(upstream, connection)


def fast_in_flight(connections: Iterable[Any]) -> list[FastExchange]:
    """The exchanges on ``connections`` (uvicorn's protocols) not yet answered, but for
    those waiting in a task (``later``): what a drain waits for beside the server's tasks."""
    return [
        cycle for connection in connections
        if type(cycle := getattr(connection, "cycle", None)) is FastExchange
        and not cycle.response_complete and cycle.task is None
    ]  # fmt: skip


async def note_answers(exchanges: list[FastExchange], finished: list[float]) -> None:
    """While a drain waits for ``exchanges``: the time (``time.monotonic``) each is answered
    or cut off, to within ``ANSWERED_POLL``, appended to ``finished``. They have no task to
    call back when done, and the request path is not asked to tell."""
    waiting = exchanges
    while waiting:
        await asyncio.sleep(ANSWERED_POLL)
        now = monotonic()
        still = []
        for exchange in waiting:
            if exchange.response_complete:
                finished.append(now)
            else:
                still.append(exchange)
        waiting = still


def grace_cut() -> Answer:
    """uvicorn's answer to a request it cancels before its response started."""
    answer = Answer()
    answer.status, answer.body = 500, b"Internal Server Error"
    answer.headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]
    return answer
