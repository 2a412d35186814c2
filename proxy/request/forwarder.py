"""Send one client request to the chosen backend and stream the answer back.

Around that one exchange: the circuit breaker on new, a cap on requests in flight per
backend, a retry on legacy when new failed before answering (and replaying is safe), the
shadow mirror, and the metrics."""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

from cutover.config import FallbackConfig, RouteConfig, Settings
from cutover.request.body import (
    BodyStream,
    BodyTooLarge,
    ClientDisconnected,
    read_body,
    request_length,
)
from cutover.request.breaker import CircuitBreaker
from cutover.request.deprecation import deprecation_headers
from cutover.request.disconnect import ClientWatch, SlowAnswers, wait_for_disconnect
from cutover.request.headers import (
    BACKEND_HEADER,
    client_response_headers,
    upstream_request_headers,
)
from cutover.request.metrics import ERROR, Metrics, code_class
from cutover.request.problem import send_problem
from cutover.request.splitter import Decision
from cutover.shadow.mirror import Mirror, Shadower
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
FALLBACK_HEADER = (b"x-cutover-fallback", b"new-failed")


class UpstreamBodyError(Exception):
    """The backend failed after the response started; the client connection is aborted."""

    def __init__(self, cause: UpstreamError) -> None:
        super().__init__(f"backend failed mid-response: {cause}")
        self.kind = cause.kind


class Overloaded(Exception):
    """Too many requests in flight to a backend for longer than ``limits.queue_timeout``."""

    def __init__(self, backend: str) -> None:
        super().__init__(f"too many requests in flight to the {backend} backend")
        self.backend = backend


def header_value(headers: RawHeaders, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def fallback_methods(route: RouteConfig, fallback: FallbackConfig) -> frozenset[str]:
    """The methods of ``route`` that legacy may serve when new fails (or while the breaker
    is open): its own list, else ``fallback.methods``; a route pinned to a backend has
    none unless it lists them."""
    if route.fallback_methods is not None:
        return frozenset(route.fallback_methods)
    return frozenset() if route.backend is not None else frozenset(fallback.methods)


class Forwarder:
    def __init__(
        self,
        settings: Settings,
        upstreams: dict[str, Upstream],
        metrics: Metrics,
        shadower: Shadower | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.upstreams = upstreams
        self.metrics = metrics
        self.shadower = shadower
        self.breaker = breaker
        self.slow = SlowAnswers()
        self.limits = settings.limits
        self.total_timeout = settings.timeouts.total
        self.slots = {
            name: asyncio.Semaphore(settings.limits.max_concurrent_per_backend)
            for name in ("legacy", "new")
        }
        fallback = settings.fallback
        self.fallback_enabled = fallback.enabled
        self.fallback_statuses = frozenset(fallback.statuses)
        self.max_replay_body = fallback.max_replay_body
        self.replayable = {route.name: fallback_methods(route, fallback)
                           for route in settings.routes}  # fmt: skip
        self.default_replayable = frozenset(fallback.methods)
        self.base_urls = {
            "legacy": settings.backends.legacy.url,
            "new": settings.backends.new.url,
        }
        self._backend_headers = {
            name: [(BACKEND_HEADER, name.encode("ascii"))] for name in ("legacy", "new")
        }
        self._deprecation = deprecation_headers(settings.deprecation)

    def target_url(self, scope: Scope, backend: str) -> str:
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        url = self.base_urls[backend] + raw_path.decode("latin-1")
        query = scope.get("query_string", b"")
        return url + "?" + query.decode("latin-1") if query else url

    def response_extras(self, decision: Decision) -> RawHeaders:
        extra = self._backend_headers[decision.backend]
        if decision.backend == "legacy" and decision.deprecation and self._deprecation:
            extra = extra + self._deprecation
        if decision.fallback:
            extra = [*extra, FALLBACK_HEADER]
        if decision.set_cookie is not None:
            extra = [*extra, (b"set-cookie", decision.set_cookie)]
        return extra

    def pin_holds(self, decision: Decision, method: str) -> bool:
        """For a request its route pins to new: whether it stays there whatever happens (the
        route did not list the method in its ``fallback_methods``)."""
        return method not in self.replayable.get(decision.route, self.default_replayable)

    def can_replay(
        self, decision: Decision, method: str, length: int | None, has_body: bool
    ) -> bool:
        """Whether a failure on new may be retried on legacy: an idempotent method (per
        route) and a body small enough to keep."""
        if not self.fallback_enabled or decision.reason == "override":
            return False
        methods = self.replayable.get(decision.route, self.default_replayable)
        if method not in methods:
            return False
        return not has_body or (length is not None and length <= self.max_replay_body)

    async def forward(self, scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
        method = scope["method"]
        headers = scope["headers"]
        length, has_body = request_length(headers)
        limit = self.limits.max_request_body
        if limit is not None and length is not None and length > limit:
            raise BodyTooLarge
        admitted = False
        if (
            decision.backend == "new"
            and self.breaker is not None
            and decision.reason != "override"
            and not (decision.reason == "pin" and self.pin_holds(decision, method))
        ):
            admitted = self.breaker.allow()
            if not admitted:
                decision.backend, decision.reason = "legacy", "breaker"
        client = scope.get("client")
        upstream_headers = upstream_request_headers(
            scope["headers"],
            client_host=client[0] if client else None,
            scheme=scope.get("scheme", "http"),
            http_version=scope.get("http_version", "1.1"),
        )
        mirror = (
            None
            if decision.shadow is None
            else self.mirror_for(scope, decision, upstream_headers, length, has_body)
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
                self.breaker.forget()  # type: ignore[union-attr]

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
        replay = decision.backend == "new" and self.can_replay(decision, method, length, has_body)

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
        if decision.backend == "new":
            failed = isinstance(outcome, Exception) or outcome.status in self.fallback_statuses
            if admitted and not isinstance(outcome, Overloaded):  # our own cap says nothing of new
                decision.judged = True
                self.breaker.record(not failed)  # type: ignore[union-attr]
            if failed and replay:
                if not isinstance(outcome, Exception):
                    await self.finish("new", outcome)
                if mirror is not None:
                    mirror.failed()  # the answer no longer comes from the mirrored side
                    mirror = None
                decision.backend, decision.fallback = "legacy", True
                outcome = await self.call(decision, scope, receive, upstream_headers, body, True)

        if isinstance(outcome, Overloaded):
            if mirror is not None:
                mirror.failed()
            await self.overloaded(send, decision)
            return
        if isinstance(outcome, UpstreamError):
            if mirror is not None:
                mirror.failed()
            await self.fail(send, scope, decision, outcome)
            return
        await self.respond(outcome, decision, receive, send, stream, mirror)

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
            try:
                async with asyncio.timeout(self.limits.queue_timeout):
                    await slot.acquire()
            except TimeoutError:
                return Overloaded(backend)
        else:
            await slot.acquire()  # free: returns without suspending
        started = perf_counter()
        watch = ClientWatch(receive, self.slow) if body_read else None
        try:
            send_request = self.upstreams[backend].send(
                scope["method"], self.target_url(scope, backend), headers, body
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
            self.metrics.observe(backend, decision.route, ERROR, perf_counter() - started)
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
        self.metrics.observe(backend, decision.route, code_class(response.status),
                             perf_counter() - started)  # fmt: skip
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
        receive: Receive,
        send: Send,
        stream: BodyStream | None,
        mirror: Mirror | None,
    ) -> None:
        headers = client_response_headers(response.headers, self.response_extras(decision))
        if response.status in BODILESS:
            headers = [(n, v) for n, v in headers if n != b"content-length"]
        if mirror is not None:
            mirror.started(response.status, header_value(response.headers, b"content-type"))
        try:
            await send({"type": "http.response.start", "status": response.status,
                        "headers": headers})  # fmt: skip
            body_read = stream is None or stream.done.is_set()
            await self.relay_body(response, receive, send, body_read, mirror)
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

    def mirror_for(
        self,
        scope: Scope,
        decision: Decision,
        upstream_headers: RawHeaders,
        length: int | None,
        has_body: bool,
    ) -> Mirror | None:
        """A Mirror when this request is sampled for a shadow comparison, else None."""
        rule = decision.shadow
        method = scope["method"]
        if self.shadower is None or rule is None or not self.shadower.sampled(rule, method):
            return None
        if has_body and (length is None or length > self.shadower.config.max_body):
            self.shadower.record(decision.route, "dropped")  # too big (or unknown) to replay
            return None
        other = "legacy" if decision.backend == "new" else "new"
        return Mirror(
            route=decision.route,
            rule=rule,
            method=method,
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=upstream_headers,
            body=None,
            primary_backend=decision.backend,
            shadow_backend=other,
            shadow_url=self.target_url(scope, other),
            cap=self.shadower.config.max_response_body,
        )

    async def relay_body(
        self,
        response: UpstreamResponse,
        receive: Receive,
        send: Send,
        body_read: bool,
        mirror: Mirror | None = None,
    ) -> None:
        try:
            chunk, more = await response.read()
        except UpstreamError as exc:
            raise UpstreamBodyError(exc) from exc
        if not more:
            await send({"type": "http.response.body", "body": chunk, "more_body": False})
            if mirror is not None:
                mirror.capture(chunk)
                mirror.finished()
            return
        # A long response: watch for the client leaving so the upstream read stops too.
        watcher = (
            asyncio.ensure_future(wait_for_disconnect(receive, response)) if body_read else None
        )
        try:
            while more:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if mirror is not None:
                    mirror.capture(chunk)
                try:
                    chunk, more = await response.read()
                except UpstreamError as exc:
                    if watcher is not None and watcher.done():
                        raise ClientDisconnected from None  # it left; we aborted the read
                    raise UpstreamBodyError(exc) from exc
            await send({"type": "http.response.body", "body": chunk, "more_body": False})
            if mirror is not None:
                mirror.capture(chunk)
                mirror.finished()
        finally:
            if watcher is not None:
                watcher.cancel()

    async def fail(self, send: Send, scope: Scope, decision: Decision, exc: UpstreamError) -> None:
        backend = decision.backend
        if exc.status == 504:
            title = "Gateway Timeout"
            detail = f"The {backend} backend did not answer in time."
        else:
            title = "Bad Gateway"
            detail = f"The {backend} backend could not be reached ({exc.kind})."
        await send_problem(
            send,
            exc.status,
            title,
            detail,
            slug=f"upstream-{exc.kind}",
            instance=scope.get("path"),
            headers=self._backend_headers[backend],
            backend=backend,
        )

    async def overloaded(self, send: Send, decision: Decision) -> None:
        retry_after = max(1, round(self.limits.queue_timeout))
        await send_problem(
            send,
            503,
            "Service Unavailable",
            f"Too many requests are in flight to the {decision.backend} backend; retry shortly.",
            slug="overloaded",
            headers=[
                *self._backend_headers[decision.backend],
                (b"retry-after", str(retry_after).encode("ascii")),
            ],
            backend=decision.backend,
        )
