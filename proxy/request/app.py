"""The gateway's ASGI application: refuse, split, forward, stamp.

A plain ASGI callable rather than a routed framework app: every request on this
listener is proxied, so routing would only add cost to the hot path. Its parts (upstream
clients, the dual run, the breaker) are built by ``cutover.ops.assembly`` and handed in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from time import perf_counter

from cutover.config import Settings
from cutover.request.access_log import AccessLog, Meter
from cutover.request.body import BadRequest, BodyTooLarge, ClientDisconnected
from cutover.request.breaker import CircuitBreaker
from cutover.request.clients import UNIDENTIFIED, ClientId, ClientIdentifier
from cutover.request.fast_path import FastPath
from cutover.request.forwarder import Forwarder
from cutover.request.lifecycle import DeprecationGate, Refusal, build_gates, iso, send_refusal
from cutover.request.metrics import Metrics
from cutover.request.mirror import DualRun
from cutover.request.problem import send_problem
from cutover.request.refusals import ALLOWED_METHODS, REFUSAL_TITLES, refuse
from cutover.request.relay import UpstreamBodyError
from cutover.request.request_id import adopt_request_id, stamping
from cutover.request.splitter import Decision, MigrationRule, Splitter
from cutover.request.usage import UsageRecorder, user_agent
from cutover.request.ws_forwarder import OpenSockets, WebSocketForwarder
from cutover.request.ws_handoff import TUNNEL
from cutover.request.ws_handshake import asks_for_websocket, handshake_problem
from cutover.types import Receive, Scope, Send
from cutover.upstream.base import Upstream
from cutover.vocabulary import AfterSunset, Lifecycle

logger = logging.getLogger("cutover.app")
deprecation_logger = logging.getLogger("cutover.deprecation")

# Set in a request's context when its response is abandoned on purpose (the backend failed
# mid-body): uvicorn's ERROR about an unfinished response is then expected, not a bug.
RESPONSE_ABANDONED: ContextVar[bool] = ContextVar("cutover_response_abandoned", default=False)


async def run_lifespan(
    receive: Receive,
    send: Send,
    startup: Callable[[], Awaitable[None]],
    shutdown: Callable[[], Awaitable[None]],
) -> None:
    """The ASGI lifespan protocol around a startup and a shutdown coroutine."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:
                logger.exception("startup failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


# The decisions a brownout or a sunset applies to, and the usage report counts: what the
# migration itself sends to its from. Not the override header (a tester's choice), nor a pin.
GATED_REASONS = frozenset({"weight", "cohort"})
DEPRECATED = Lifecycle.DEPRECATED  # read on every gated request: no enum lookup


class CutoverApp:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        upstreams: dict[str, Upstream],
        shadower: DualRun | None = None,
        breakers: dict[str, CircuitBreaker] | None = None,
        *,
        recorder: UsageRecorder | None = None,
        identifier: ClientIdentifier | None = None,
        access_log: AccessLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``identifier`` None: every client is unidentified (no exemption matches);
        ``access_log`` None: no access log (and no cost for one)."""
        self.settings = settings
        self.metrics = metrics
        self.splitter = Splitter(settings)
        self.upstreams = upstreams
        self.shadower = shadower
        self.breakers = breakers or {}
        self.forwarder = Forwarder(settings, upstreams, metrics, shadower, self.breakers)
        self.sockets = OpenSockets(metrics)  # kept by a reload, as the sockets are
        self.websockets = WebSocketForwarder(settings, metrics, self.breakers, self.sockets)
        self.gates = build_gates(settings)  # replaced by a reload
        self.recorder = recorder
        self.identifier = identifier
        self.access_log = access_log
        self.clock = clock
        self.fast_path = FastPath(self)  # the protocol's, for what needs only relaying

    async def startup(self) -> None:
        if self.access_log is not None:
            self.access_log.start()
        for upstream in self.upstreams.values():
            await upstream.start()
        now = self.clock()
        for gate in self.gates.values():
            state = gate.state(now)
            kept = state.lifecycle == Lifecycle.SUNSET and gate.after_sunset == AfterSunset.KEEP
            if kept and gate.keep_warning_due(now):
                self.warn_kept(gate)

    async def shutdown(self) -> None:
        self.fast_path.close()
        if self.shadower is not None:
            await self.shadower.aclose()
        for upstream in self.upstreams.values():
            await upstream.aclose()
        if self.access_log is not None:
            await self.access_log.aclose()  # the last requests' lines are written

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            request_id = adopt_request_id(scope)
            log = self.access_log
            if log is None:
                await self.handle(scope, receive, stamping(send, request_id))
                return
            started, clock = time.time(), perf_counter()
            meter = Meter(send, request_id)
            decision = None
            try:
                decision = await self.handle(scope, receive, meter)
            finally:
                log.record(scope, started, perf_counter() - clock, meter, decision)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "websocket":
            await self.websocket(scope, send)

    async def route(self, scope: Scope, send: Send) -> tuple[Decision | None, bool]:
        """The request's decision (None: refused before routing) and whether it is answered
        already (refused, by the rules or by its deprecation's brownout or sunset)."""
        self.resolve_client(scope)
        refusal, headers = refuse(scope), []
        if refusal is not None and refusal[0] == 405:
            headers = [(b"allow", ALLOWED_METHODS)]
        elif refusal is None and scope["type"] == "websocket":
            problem = handshake_problem(scope)
            if problem is not None:
                refusal, headers = problem[:2], problem[2]
        elif refusal is None and scope["method"] == "GET" and asks_for_websocket(scope["headers"]):
            # A handshake that was not handed over (RFC 6455 §4.1): it has a body.
            refusal = 400, "a WebSocket handshake has no body"
        if refusal is not None:
            status, detail = refusal
            title = REFUSAL_TITLES[status]
            await send_problem(send, status, title, detail, slug="refused", headers=headers)
            return None, True
        decision = self.splitter.decide(
            scope["path"], scope["method"], scope["headers"], scope.get("client"),
            scope.get("query_string", b""),
        )  # fmt: skip
        gated = self.gate(scope, decision)
        if gated is not None:
            await send_refusal(send, gated)
            return decision, True
        return decision, False

    def gate(self, scope: Scope, decision: Decision) -> Refusal | None:
        """A request its migration sends to a deprecated ``from``: through the migration's
        deprecation gate (counted, perhaps refused or sent to ``to``); None: served."""
        migration = decision.migration
        if (
            migration is not None
            and decision.backend == migration.source
            and decision.deprecation
            and decision.reason in GATED_REASONS
            and (gate := self.gates.get(migration.name)) is not None
        ):
            return self.through_gate(gate, scope, decision, migration)
        return None

    async def websocket(self, scope: Scope, send: Send) -> None:
        client = scope.get("extensions", {}).get(TUNNEL)
        if client is None:  # a server that cannot hand the connection over: refused (403)
            await send({"type": "websocket.close", "code": 1008})
            return
        client.request_id = adopt_request_id(scope)
        started, clock, decision = time.time(), perf_counter(), None
        try:
            decision, answered = await self.route(scope, client.respond)
            if decision is not None and not answered:
                await self.websockets.forward(scope, client, decision,
                                              self.forwarder.response_extras,
                                              self.forwarder.hops)  # fmt: skip
        except BadRequest as exc:
            await send_problem(client.respond, 400, "Bad Request", str(exc), slug="bad-request")
        finally:
            if self.access_log is not None:  # one line for the session, at its end
                self.access_log.session(
                    scope, started=started, duration=perf_counter() - clock,
                    status=client.status, sent=client.sent, decision=decision,
                    request_id=client.request_id, backend=client.backend,
                    close_code=client.close_code,
                )  # fmt: skip

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> Decision | None:
        """Answer one request; its decision (None: refused before routing)."""
        decision, answered = await self.route(scope, send)
        if decision is None or answered:
            return decision
        try:
            await self.forwarder.forward(scope, receive, send, decision)
        except ClientDisconnected:
            pass
        except BadRequest as exc:
            await send_problem(send, 400, "Bad Request", str(exc), slug="bad-request")
        except BodyTooLarge:
            limit = self.settings.limits.max_request_body
            detail = f"The request body is larger than the {limit} bytes this proxy accepts."
            # The rest of the body is not read: the connection cannot be reused.
            await send_problem(send, 413, "Content Too Large", detail, slug="body-too-large",
                               headers=[(b"connection", b"close")])  # fmt: skip
        except UpstreamBodyError as exc:
            # Returning without finishing the response makes the server drop the
            # connection, so the client sees a truncated response, not a clean end.
            RESPONSE_ABANDONED.set(True)
            logger.warning("%s backend: %s", decision.backend, exc)
        return decision

    def through_gate(
        self, gate: DeprecationGate, scope: Scope, decision: Decision, migration: MigrationRule
    ) -> Refusal | None:
        """A request the migration sends to its deprecated from: the brownout's or the
        sunset's refusal, or None (served, perhaps by ``to`` instead); counted either way."""
        now = self.clock()
        state = gate.state(now)
        refusal = None
        brownout = False
        client: ClientId | None = None
        if state.lifecycle != DEPRECATED:
            if state.lifecycle == Lifecycle.SUNSET:
                if gate.after_sunset == AfterSunset.ROUTE_TO_NEW:
                    self.metrics.lifecycle_outcome("sunset", gate.migration, "routed_to_new")
                    decision.backend = migration.target
                    return None  # served by to: not a call to the old API any more
                if gate.after_sunset == AfterSunset.GONE:
                    self.metrics.lifecycle_outcome("sunset", gate.migration, "gone")
                    refusal = state.refusal
                else:
                    self.metrics.lifecycle_outcome("sunset", gate.migration, "served")
                    if gate.keep_warning_due(now):
                        self.warn_kept(gate)
            else:
                client = self.identify(scope)
                if client.key in gate.exempt:
                    self.metrics.lifecycle_outcome("brownout", gate.migration, "exempt")
                else:
                    brownout = True
                    outcome = "dry_run" if gate.dry_run else "refused"
                    self.metrics.lifecycle_outcome("brownout", gate.migration, outcome)
                    refusal = None if gate.dry_run else state.refusal
        if self.recorder is not None:
            client = client if client is not None else self.identify(scope)
            self.recorder.record(gate.migration, client, scope["method"], gate.prefix,
                                 user_agent(scope["headers"]), brownout, now,
                                 scope["path"])  # fmt: skip
        return refusal

    def resolve_client(self, scope: Scope) -> None:
        """Behind a trusted proxy, ``scope["client"]`` becomes the client its forwarding
        header names, once, before anything reads it (``listen.trusted_proxies``)."""
        peers = self.forwarder.hops.peers
        if peers is not None:
            peers.resolve(scope)

    def identify(self, scope: Scope) -> ClientId:
        if self.identifier is None:
            return UNIDENTIFIED
        return self.identifier.identify(scope["headers"], scope.get("client"))

    def warn_kept(self, gate: DeprecationGate) -> None:
        deprecation_logger.warning(
            "%s is past its sunset (%s) and after_sunset is keep: its requests under %s still "
            "reach its from; set after_sunset to gone or route_to_new to finish the removal",
            gate.migration, iso(gate.sunset or 0), gate.prefix,
        )  # fmt: skip

    async def lifespan(self, receive: Receive, send: Send) -> None:
        await run_lifespan(receive, send, self.startup, self.shutdown)
