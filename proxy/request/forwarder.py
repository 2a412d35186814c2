"""Send one client request to the chosen backend and stream the answer back.

Around that one exchange: the circuit breaker in front of each migration's ``to``, a cap on
requests in flight per backend (``slots.py``), a retry on the migration's ``from`` when its
``to`` failed before answering and replaying is safe (``replay.py``), the shadow mirror
(``mirror.py``), and the metrics."""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

from cutover.config import Settings
from cutover.request.body import (
    BodyStream,
    BodyTooLarge,
    ClientDisconnected,
    read_body,
    request_length,
)
from cutover.request.breaker import CircuitBreaker
from cutover.request.disconnect import ClientWatch, SlowAnswers
from cutover.request.headers import BACKEND_HEADER, header_value
from cutover.request.hops import Hops
from cutover.request.metrics import ERROR, Metrics, code_class
from cutover.request.mirror import DualRun, Mirror, mirror_for
from cutover.request.problem import send_overloaded, send_upstream_failure
from cutover.request.relay import UpstreamBodyError, relay_body
from cutover.request.replay import ReplayPolicy
from cutover.request.slots import Overloaded, backend_slots, retry_after, wait_for_slot
from cutover.request.splitter import Decision
from cutover.request.target import target_url
from cutover.types import RawHeaders, Receive, Scope, Send
from cutover.upstream.base import (
    RequestBody,
    Upstream,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
)

logger = logging.getLogger("cutover.forwarder")

# No body may follow these statuses, so a Content-Length on them only trips the server.
BODILESS = frozenset({204, 304})
# Bodies up to this size (by Content-Length) are read whole before sending: one write
# upstream is cheaper than a streamed payload, and they can be replayed.
SMALL_BODY = 64 * 1024
FALLBACK_HEADER = b"x-cutover-fallback"  # "<to>-failed": new-failed for a migration to new


class Forwarder:
    def __init__(
        self,
        settings: Settings,
        upstreams: dict[str, Upstream],
        metrics: Metrics,
        shadower: DualRun | None = None,
        breakers: dict[str, CircuitBreaker] | None = None,
    ) -> None:
        """``breakers``: by backend, a circuit breaker in front of each migration's ``to``."""
        self.upstreams = upstreams
        self.metrics = metrics
        self.shadower = shadower
        self.breakers = breakers or {}
        self.slow = SlowAnswers()
        self.limits = settings.limits
        self.total_timeout = settings.timeouts.total
        self.slots = backend_slots(settings.limits, settings.backends)
        self.replay = ReplayPolicy.from_settings(settings)
        self.fallback_statuses = self.replay.statuses  # read on every answer from new
        self.base_urls = {name: backend.url for name, backend in settings.backends.items()}
        self.hops = Hops(settings)
        self.backend_headers = {
            name: [(BACKEND_HEADER, name.encode("ascii"))] for name in settings.backends
        }

    def response_extras(self, decision: Decision) -> RawHeaders:
        extra = self.backend_headers[decision.backend]
        migration = decision.migration
        if (
            migration is not None
            and migration.deprecation
            and decision.deprecation
            and decision.backend == migration.source
        ):
            extra = extra + migration.deprecation
        if decision.fallback and migration is not None:  # only a migration's to falls back
            extra = [*extra, (FALLBACK_HEADER, migration.target.encode("ascii") + b"-failed")]
        if decision.set_cookie is not None:
            extra = [*extra, (b"set-cookie", decision.set_cookie)]
        return extra

    def admit(self, decision: Decision, method: str) -> CircuitBreaker | None:
        """The breaker that admitted the request (its outcome is owed to it), or None: none
        was asked, or the open breaker sent the request to its migration's ``from``."""
        breaker = self.breakers.get(decision.backend)
        fallback = decision.fallback_backend()
        if (
            breaker is None
            or fallback is None
            or decision.reason == "override"
            or (decision.reason == "pin" and self.replay.pin_holds(decision.route, method))
        ):
            return None
        if breaker.allow():
            return breaker
        decision.backend, decision.reason = fallback, "breaker"
        return None

    async def forward(self, scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
        method = scope["method"]
        length, has_body = request_length(scope["headers"])
        limit = self.limits.max_request_body
        if limit is not None and length is not None and length > limit:
            raise BodyTooLarge
        breaker = self.admit(decision, method)
        admitted = breaker is not None
        upstream_headers = self.hops.request_headers(scope)
        mirror = None
        if decision.shadow is not None:
            mirror = mirror_for(
                self.shadower, scope, decision, upstream_headers, length, has_body, self.base_urls
            )
        try:
            await self._forward(scope, receive, send, decision, method, length, has_body,
                                admitted, upstream_headers, mirror)  # fmt: skip
        except ClientDisconnected:
            if mirror is not None:
                self.shadower.client_left(mirror)  # type: ignore[union-attr]
            raise
        finally:
            if admitted and not decision.judged:
                breaker.forget()  # type: ignore[union-attr]

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        decision: Decision,
        method: str,
        length: int | None,
        has_body: bool,
        admitted: bool,
        upstream_headers: RawHeaders,
        mirror: Mirror | None,
    ) -> None:
        primary = decision.backend
        fallback = decision.fallback_backend()
        replay = fallback is not None and self.replay.can_replay(
            decision.route, decision.reason, method, length, has_body
        )

        stream: BodyStream | None = None
        body: RequestBody = None
        if has_body:
            if length is not None and (length <= SMALL_BODY or mirror is not None or replay):
                body = await read_body(receive)
            else:
                stream = BodyStream(receive, self.limits.max_request_body)
                body = stream.chunks()
        if mirror is not None:
            mirror.body = body  # type: ignore[assignment]  # bytes or None: read whole above
            if not self.shadower.start(mirror):  # type: ignore[union-attr]
                mirror = None
        body_read = stream is None

        outcome = await self.call(decision, scope, receive, upstream_headers, body, body_read)
        if stream is not None and stream.too_large:
            if not isinstance(outcome, Exception):
                await self.finish(decision.backend, outcome)
            raise BodyTooLarge
        if fallback is not None:
            failed = isinstance(outcome, Exception) or outcome.status in self.fallback_statuses
            if admitted and not isinstance(outcome, Overloaded):  # our own cap says nothing of it
                decision.judged = True
                self.breakers[primary].record(not failed)
            if failed and replay:
                if not isinstance(outcome, Exception):
                    await self.finish(primary, outcome)
                if mirror is not None:
                    mirror.failed()  # the answer no longer comes from the mirrored side
                    mirror = None
                decision.backend, decision.fallback = fallback, True
                outcome = await self.call(decision, scope, receive, upstream_headers, body, True)

        if isinstance(outcome, Overloaded):
            if mirror is not None:
                mirror.failed()
            backend = decision.backend
            await send_overloaded(
                send, backend, retry_after(self.limits), self.backend_headers[backend]
            )
            return
        if isinstance(outcome, UpstreamError):
            if mirror is not None:
                mirror.failed()
            backend = decision.backend
            await send_upstream_failure(
                send, outcome, backend, scope.get("path"), self.backend_headers[backend]
            )
            return
        await self.respond(outcome, decision, scope, receive, send, stream, mirror)

    async def call(
        self,
        decision: Decision,
        scope: Scope,
        receive: Receive,
        headers: RawHeaders,
        body: RequestBody,
        body_read: bool,
    ) -> UpstreamResponse | UpstreamError | Overloaded:
        """One exchange up to the response headers, holding one of the backend's slots
        (released by ``finish``). Failures are returned, counted against the backend."""
        backend = decision.backend
        slot = self.slots[backend]
        if slot.locked():
            if not await wait_for_slot(slot, self.limits.queue_timeout):
                return Overloaded(backend)
        else:
            await slot.acquire()  # free: returns without suspending
        started = perf_counter()
        watch = ClientWatch(receive, self.slow) if body_read else None
        headers = self.hops.for_backend(backend, headers, scope)
        try:
            send_request = self.upstreams[backend].send(
                scope["method"], target_url(self.base_urls[backend], scope), headers, body
            )
            if self.total_timeout is None:
                response = await send_request
            else:
                async with asyncio.timeout(self.total_timeout):
                    response = await send_request
        except asyncio.CancelledError:
            slot.release()
            if watch is not None and watch.client_gone():
                raise ClientDisconnected from None
            raise
        except (UpstreamError, TimeoutError) as exc:
            slot.release()
            if watch is not None:
                watch.stop()
            error = exc if isinstance(exc, UpstreamError) else UpstreamTimeout("timeouts.total")
            self.metrics.observe(decision.label, backend, decision.route, ERROR,
                                 perf_counter() - started, decision.cohort)  # fmt: skip
            self.metrics.upstream_error(backend, error.kind)
            logger.warning("backend %s failed (%s): %s", backend, error.kind, error)
            return error
        except BaseException:
            slot.release()
            if watch is not None:
                watch.stop()
            raise
        if watch is not None:
            watch.stop()
        self.metrics.observe(decision.label, backend, decision.route, code_class(response.status),
                             perf_counter() - started, decision.cohort)  # fmt: skip
        return response

    async def finish(self, backend: str, response: UpstreamResponse) -> None:
        try:
            await response.aclose()
        finally:
            self.slots[backend].release()

    async def respond(
        self,
        response: UpstreamResponse,
        decision: Decision,
        scope: Scope,
        receive: Receive,
        send: Send,
        stream: BodyStream | None,
        mirror: Mirror | None,
    ) -> None:
        extras = self.response_extras(decision)
        headers = self.hops.response_headers(decision.backend, response.headers, extras, scope)
        if response.status in BODILESS:
            headers = [(n, v) for n, v in headers if n != b"content-length"]
        if mirror is not None:
            mirror.started(response.status, header_value(response.headers, b"content-type"))
        try:
            await send({"type": "http.response.start", "status": response.status,
                        "headers": headers})  # fmt: skip
            body_read = stream is None or stream.done.is_set()
            await relay_body(response, receive, send, body_read, mirror)
        except UpstreamBodyError as exc:
            self.metrics.upstream_error(decision.backend, exc.kind)
            raise
        except ClientDisconnected:
            if mirror is not None:  # before the finally below settles it as failed
                self.shadower.client_left(mirror)  # type: ignore[union-attr]
            raise
        finally:
            if mirror is not None:
                mirror.failed()  # a no-op when relay_body finished it
            await self.finish(decision.backend, response)
