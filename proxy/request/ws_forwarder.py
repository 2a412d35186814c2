"""A WebSocket handshake sent to the backend its migration chose, on a connection of its own
(never pooled), and the open socket it becomes. The breaker and the fallback to ``from``
apply to the handshake only; an open socket is never moved."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from urllib.parse import urlsplit

from cutover.config import Settings
from cutover.request.breaker import CircuitBreaker
from cutover.request.headers import (
    BACKEND_HEADER,
    client_response_headers,
)
from cutover.request.hops import Hops
from cutover.request.metrics import ERROR, Metrics, code_class
from cutover.request.problem import send_upstream_failure
from cutover.request.replay import ReplayPolicy
from cutover.request.request_id import REQUEST_ID_HEADER
from cutover.request.splitter import Decision
from cutover.request.ws_handshake import request_head, response_head, switching_headers
from cutover.request.ws_tunnel import BackendEnd, ClientEnd
from cutover.types import RawHeaders, Scope
from cutover.upstream.base import UpstreamConnectError, UpstreamError, UpstreamTimeout
from cutover.upstream.tls import client_context
from cutover.vocabulary import HandshakeResult

logger = logging.getLogger("cutover.websocket")

GOING_AWAY = 1001  # the proxy is shutting down (RFC 6455 §7.4.1)
SERVICE_RESTART = 1012  # the backend was rolled back: reconnect (IANA registry)
BAD_GATEWAY = 1014  # the backend's connection ended without a close frame (IANA registry)
# After a close frame of the proxy's own: how long the peers get to finish, then both cut.
CLOSE_WAIT = 2.0


@dataclass(frozen=True)
class Origin:
    host: str
    port: int
    host_header: bytes
    path: bytes  # the backend URL's path prefix
    tls: ssl.SSLContext | None

    @classmethod
    def from_url(cls, url: str, ca_file: object) -> Origin:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        tls = client_context(ca_file) if secure else None  # type: ignore[arg-type]
        return cls(parts.hostname or "", port, parts.netloc.encode("idna"),
                   parts.path.rstrip("/").encode("latin-1"), tls)  # fmt: skip


def session_end(client: ClientEnd, upstream: BackendEnd) -> None:
    """What the session sent the client and how it closed (the first close frame either
    way, else the one Cutover sent), for the access log."""
    to_client, to_backend = upstream.pipe, client.pipe
    client.sent = to_client.carried if to_client is not None else 0
    for pipe in (to_client, to_backend):
        if pipe is not None and pipe.cursor.close_code is not None:
            client.close_code = pipe.cursor.close_code
            return
    for pipe in (to_client, to_backend):
        if pipe is not None and pipe.ending is not None:
            client.close_code = pipe.ending
            return


@dataclass(eq=False)
class OpenSocket:
    migration: str
    backend: str
    client: ClientEnd
    upstream: BackendEnd

    def close(self, code: int) -> None:
        """A close frame with ``code`` to both ends (between frames), then both cut."""
        for pipe in (self.upstream.pipe, self.client.pipe):
            if pipe is not None:
                pipe.end(code)
        asyncio.get_running_loop().call_later(CLOSE_WAIT, self.abort)

    def abort(self) -> None:
        self.client.transport.abort()
        if self.upstream.transport is not None:
            self.upstream.transport.abort()


@dataclass
class OpenSockets:
    """Every open socket of this process; kept across reloads (they survive them)."""

    metrics: Metrics
    open: set[OpenSocket] = field(default_factory=set)

    def add(self, sock: OpenSocket) -> None:
        self.open.add(sock)
        self.metrics.websocket_connections.labels(sock.migration, sock.backend).inc()

    def discard(self, sock: OpenSocket) -> None:
        if sock in self.open:
            self.open.discard(sock)
            self.metrics.websocket_connections.labels(sock.migration, sock.backend).dec()

    def close(self, migration: str, backend: str, code: int) -> int:
        """Close the sockets of ``migration`` on ``backend``; returns how many."""
        closing = [s for s in self.open if s.migration == migration and s.backend == backend]
        for sock in closing:
            sock.close(code)
        return len(closing)


class WebSocketForwarder:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        breakers: dict[str, CircuitBreaker],
        sockets: OpenSockets,
    ) -> None:
        self.metrics = metrics
        self.breakers = breakers
        self.sockets = sockets
        timeouts = settings.timeouts
        self.connect_timeout = timeouts.connect
        self.answer_timeout = min(timeouts.read, timeouts.total or timeouts.read)
        self.replay = ReplayPolicy.from_settings(settings)
        self.origins = {
            name: Origin.from_url(backend.url, backend.ca_file)
            for name, backend in settings.backends.items()
        }

    async def forward(
        self,
        scope: Scope,
        client: ClientEnd,
        decision: Decision,
        extras: Callable[[Decision], RawHeaders],
        hops: Hops,
    ) -> None:
        """``extras``: the headers of the proxy's own for the answer of the decision's final
        backend (``Forwarder.response_extras``). Raises BadRequest for unforwardable headers."""
        # The forwarding headers by the same rules as a request's (trusted proxies, the
        # forwarded vocabulary), the scheme the one of HTTP the handshake came over.
        secure = scope["scheme"] == "wss"
        headers = hops.request_headers({**scope, "scheme": "https" if secure else "http"})
        breaker = self.breakers.get(decision.backend)
        fallback = decision.fallback_backend()
        admitted = False
        pinned = decision.reason == "pin" and self.replay.pin_holds(decision.route, "GET")
        if (
            breaker is not None
            and fallback is not None
            and decision.reason != "override"
            and not pinned
        ):
            admitted = breaker.allow()
            if not admitted:
                decision.backend, decision.reason = fallback, "breaker"
        try:
            outcome = await self.handshake(
                decision, scope, hops.for_backend(decision.backend, headers, scope)
            )
        except BaseException:
            if admitted:
                breaker.forget()  # type: ignore[union-attr]
            raise
        if fallback is not None and decision.backend != fallback:
            failed = isinstance(outcome, UpstreamError) or outcome.status in self.replay.statuses
            if admitted:
                self.breakers[decision.backend].record(not failed)
            replay = self.replay.can_replay(decision.route, decision.reason, "GET", None, False)
            if failed and replay:
                if isinstance(outcome, BackendEnd):
                    outcome.transport.close()
                decision.backend, decision.fallback = fallback, True
                outcome = await self.handshake(
                    decision, scope, hops.for_backend(decision.backend, headers, scope)
                )
        if isinstance(outcome, UpstreamError):
            named = [(BACKEND_HEADER, decision.backend.encode("ascii"))]
            await send_upstream_failure(client.respond, outcome, decision.backend,
                                        scope.get("path"), named)  # fmt: skip
            return
        answer = client_response_headers(outcome.headers, extras(decision))
        client.backend = decision.backend
        if outcome.status != 101:
            body = bytes(outcome.body)
            outcome.transport.close()
            answer = [(n, v) for n, v in answer if n != b"content-length"]
            answer.append((b"content-length", str(len(body)).encode("ascii")))
            await client.respond({"type": "http.response.start", "status": outcome.status,
                                  "headers": answer})  # fmt: skip
            await client.respond({"type": "http.response.body", "body": body})
            return
        if client.request_id is not None:
            answer.append((REQUEST_ID_HEADER, client.request_id))
        client.transport.write(response_head(101, switching_headers(answer)))
        client.status = 101
        await self.relay(client, outcome, decision)

    async def handshake(
        self, decision: Decision, scope: Scope, headers: RawHeaders
    ) -> BackendEnd | UpstreamError:
        """The handshake on a new connection to the decision's backend, up to its answer
        (a 101's head, or a whole refusal); a failure is counted and returned."""
        backend = decision.backend
        origin = self.origins[backend]
        target = origin.path + (scope.get("raw_path") or b"/")
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        loop = asyncio.get_running_loop()
        started = perf_counter()
        end: BackendEnd | None = None
        try:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    _, end = await loop.create_connection(
                        BackendEnd, origin.host, origin.port, ssl=origin.tls,
                        server_hostname=origin.host if origin.tls else None,
                    )  # fmt: skip
            except TimeoutError:
                raise UpstreamTimeout("connecting timed out (timeouts.connect)") from None
            except OSError as exc:
                raise UpstreamConnectError(str(exc) or type(exc).__name__) from None
            host = origin.host_header
            if headers and headers[0][0] == b"host":  # the client's (backends.*.preserve_host)
                host, headers = headers[0][1], headers[1:]
            end.transport.write(request_head(target, host, headers))
            try:
                async with asyncio.timeout(self.answer_timeout):
                    await end.head
            except TimeoutError:
                raise UpstreamTimeout("no answer to the handshake in time") from None
        except BaseException as exc:
            if end is not None:
                end.transport.abort()
            if not isinstance(exc, UpstreamError):
                raise
            self.metrics.observe(decision.label, backend, decision.route, ERROR,
                                 perf_counter() - started, decision.cohort)  # fmt: skip
            self.metrics.upstream_error(backend, exc.kind)
            self.count(decision, HandshakeResult.FAILED)
            logger.warning("WebSocket handshake to %s failed (%s): %s", backend, exc.kind, exc)
            return exc
        self.metrics.observe(decision.label, backend, decision.route, code_class(end.status),
                             perf_counter() - started, decision.cohort)  # fmt: skip
        accepted = end.status == 101
        self.count(decision, HandshakeResult.ACCEPTED if accepted else HandshakeResult.REFUSED)
        return end

    def count(self, decision: Decision, result: HandshakeResult) -> None:
        self.metrics.websocket_handshakes.labels(decision.label, decision.backend, result).inc()

    async def relay(self, client: ClientEnd, upstream: BackendEnd, decision: Decision) -> None:
        """Splice the two connections until either ends; the other is then closed."""
        upstream.splice(client)
        client.splice(upstream.transport)
        sock = OpenSocket(decision.label, decision.backend, client, upstream)
        self.sockets.add(sock)
        try:
            client_gone = asyncio.ensure_future(client.lost.wait())
            backend_gone = asyncio.ensure_future(upstream.lost.wait())
            try:
                await asyncio.wait((client_gone, backend_gone), return_when="FIRST_COMPLETED")
            finally:
                client_gone.cancel()
                backend_gone.cancel()
            if upstream.lost.is_set() and not client.lost.is_set():
                to_client = upstream.pipe
                assert to_client is not None
                if not to_client.cursor.close_seen:
                    logger.warning(
                        "the %s backend's WebSocket connection ended without a close frame: "
                        "closed to the client (%d)", decision.backend, BAD_GATEWAY,
                    )  # fmt: skip
                to_client.end(BAD_GATEWAY, source_gone=True)
        except asyncio.CancelledError:
            sock.close(GOING_AWAY)  # the shutdown grace ran out
            raise
        else:
            # Either end may have gone before the splice took it in: close both.
            client.transport.close()
            upstream.transport.close()
        finally:
            self.sockets.discard(sock)
            session_end(client, upstream)
