"""The gateway's ASGI application: refuse, split, forward, stamp.

A plain ASGI callable rather than a routed framework app: every request on this
listener is proxied, so routing would only add cost to the hot path. Its parts (upstream
clients, the dual run, the breaker) are built by ``cutover.ops.assembly`` and handed in.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from cutover.config import Settings
from cutover.request.body import BadRequest, BodyTooLarge, ClientDisconnected
from cutover.request.breaker import CircuitBreaker
from cutover.request.forwarder import Forwarder
from cutover.request.metrics import Metrics
from cutover.request.mirror import DualRun
from cutover.request.problem import send_problem
from cutover.request.relay import UpstreamBodyError
from cutover.request.splitter import Splitter
from cutover.types import Receive, Scope, Send
from cutover.upstream.base import Upstream

logger = logging.getLogger("cutover.app")

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


ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
REFUSAL_TITLES = {400: "Bad Request", 405: "Method Not Allowed"}


def refuse(scope: Scope) -> tuple[int, str] | None:
    """(status, reason) for a request the proxy will not forward, else None."""
    method = scope["method"]
    if method in ("CONNECT", "TRACE"):
        # CONNECT would open a tunnel past every rule here; TRACE reflects the request,
        # cookies and forwarding headers included (RFC 9110 §9.3.6, §9.3.8).
        return 405, f"{method} is not forwarded by this proxy"
    version = scope.get("http_version", "1.1")
    if version != "1.1" and version != "1.0":
        # httptools also parses HTTP/0.9 and HTTP/2.0 request lines: neither can be forwarded.
        # 400 rather than 505: a refusal here is always a 4xx (or 501), as everywhere else.
        return 400, f"HTTP/{version} is not supported; send HTTP/1.1 or HTTP/1.0"
    raw_path = scope.get("raw_path") or scope["path"].encode("latin-1", "replace")
    if not raw_path.startswith(b"/"):
        return 400, "the request target must be a path (origin-form)"
    return None  # Host is checked where the headers are read: headers.upstream_request_headers


class CutoverApp:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        upstreams: dict[str, Upstream],
        shadower: DualRun | None = None,
        breakers: dict[str, CircuitBreaker] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.splitter = Splitter(settings)
        self.upstreams = upstreams
        self.shadower = shadower
        self.breakers = breakers or {}
        self.forwarder = Forwarder(settings, upstreams, metrics, shadower, self.breakers)

    async def startup(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.start()

    async def shutdown(self) -> None:
        if self.shadower is not None:
            await self.shadower.aclose()
        for upstream in self.upstreams.values():
            await upstream.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "websocket":
            # WebSocket proxying is not supported: refuse the handshake (403).
            await send({"type": "websocket.close", "code": 1008})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = refuse(scope)
        if refusal is not None:
            status, detail = refusal
            headers = [(b"allow", ALLOWED_METHODS)] if status == 405 else []
            title = REFUSAL_TITLES[status]
            await send_problem(send, status, title, detail, slug="refused", headers=headers)
            return
        decision = self.splitter.decide(
            scope["path"], scope["method"], scope["headers"], scope.get("client"),
            scope.get("query_string", b""),
        )  # fmt: skip
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

    async def lifespan(self, receive: Receive, send: Send) -> None:
        await run_lifespan(receive, send, self.startup, self.shutdown)
