"""Send one client request to the chosen backend and stream the answer back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from time import perf_counter

from .config import Settings
from .deprecation import deprecation_headers
from .headers import BACKEND_HEADER, client_response_headers, upstream_request_headers
from .metrics import ERROR, Metrics, code_class
from .problem import send_problem
from .shadow import Mirror, Shadower
from .splitter import Decision
from .types import RawHeaders, Receive, Scope, Send
from .upstream import RequestBody, Upstream, UpstreamError, UpstreamResponse

logger = logging.getLogger("cutover.forwarder")

# A request still waiting for response headers after this long gets a watcher for the
# client leaving; quicker ones never pay for one.
WATCH_AFTER = 0.5
# No body may follow these statuses, so a Content-Length on them only trips the server.
BODILESS = frozenset({204, 304})

# Bodies up to this size (by Content-Length) are read whole before sending: one write
# upstream is cheaper than a streamed payload, and later features can replay them.
SMALL_BODY = 64 * 1024


class ClientDisconnected(Exception):
    """The client went away before its request body was read."""


class BadRequest(Exception):
    """The request cannot be forwarded as it stands (answered with 400)."""


class UpstreamBodyError(Exception):
    """The backend failed after the response started; the client connection is aborted."""

    def __init__(self, cause: UpstreamError) -> None:
        super().__init__(f"backend failed mid-response: {cause}")
        self.kind = cause.kind


def request_length(headers: RawHeaders) -> tuple[int | None, bool]:
    """(Content-Length, has a body at all) from the request headers."""
    length = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            if length is not None or not value.isdigit():
                raise BadRequest("Content-Length must be a single non-negative integer")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked or bool(length)


def header_value(headers: RawHeaders, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def stream_body(receive: Receive, done: asyncio.Event) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            done.set()
            return


async def wait_for_disconnect(receive: Receive, response: UpstreamResponse) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    response.abort()


class ClientWatch:
    """Cancel the current task if the client disconnects while the backend is slow to
    answer. Registering is a dict insert; the watching task starts only for requests still
    without response headers after ``WATCH_AFTER`` seconds (see ``SlowAnswers``)."""

    def __init__(self, receive: Receive, slow: SlowAnswers) -> None:
        self._receive = receive
        self._task = asyncio.current_task()
        self._gone = False
        self._watcher: asyncio.Task[None] | None = None
        self._slow = slow
        slow.add(self)

    def start(self) -> None:
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._gone = True
        if self._task is not None:
            self._task.cancel()

    def client_gone(self) -> bool:
        if self._gone and self._task is not None:
            self._task.uncancel()
        return self._gone

    def stop(self) -> None:
        self._slow.discard(self)
        if self._watcher is not None:
            self._watcher.cancel()


class SlowAnswers:
    """One ticking task for every request waiting on its backend (cheaper than a timer per
    request); it ends by itself when nothing is waiting."""

    def __init__(self, after: float = WATCH_AFTER) -> None:
        self.after = after
        self._waiting: dict[ClientWatch, float] = {}
        self._ticker: asyncio.Task[None] | None = None

    def add(self, watch: ClientWatch) -> None:
        self._waiting[watch] = time.monotonic()
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())

    def discard(self, watch: ClientWatch) -> None:
        self._waiting.pop(watch, None)

    async def _tick(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(self.after / 2)
                cutoff = time.monotonic() - self.after
                for watch, since in list(self._waiting.items()):
                    if since <= cutoff:
                        del self._waiting[watch]
                        watch.start()
        finally:
            self._ticker = None


class Forwarder:
    def __init__(
        self,
        settings: Settings,
        upstreams: dict[str, Upstream],
        metrics: Metrics,
        shadower: Shadower | None = None,
    ) -> None:
        self.upstreams = upstreams
        self.metrics = metrics
        self.shadower = shadower
        self.slow = SlowAnswers()
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
        if decision.set_cookie is not None:
            extra = [*extra, (b"set-cookie", decision.set_cookie)]
        return extra

    async def forward(self, scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
        backend = decision.backend
        headers = scope["headers"]
        client = scope.get("client")
        upstream_headers = upstream_request_headers(
            headers,
            client_host=client[0] if client else None,
            scheme=scope.get("scheme", "http"),
            http_version=scope.get("http_version", "1.1"),
        )
        length, has_body = request_length(headers)
        mirror = (
            None
            if decision.shadow is None
            else self.mirror_for(scope, decision, upstream_headers, length, has_body)
        )
        body_done = asyncio.Event()
        body: RequestBody = None
        if not has_body:
            body_done.set()
        elif length is not None and (length <= SMALL_BODY or mirror is not None):
            body = await read_body(receive)
            body_done.set()
        else:
            body = stream_body(receive, body_done)
        if mirror is not None:
            mirror.body = body  # type: ignore[assignment]  # bytes or None: read whole above
            if not self.shadower.start(mirror):  # type: ignore[union-attr]
                mirror = None

        started = perf_counter()
        watch = ClientWatch(receive, self.slow) if body_done.is_set() else None
        try:
            response = await self.upstreams[backend].send(
                scope["method"], self.target_url(scope, backend), upstream_headers, body
            )
        except asyncio.CancelledError:
            if mirror is not None:
                mirror.failed()
            if watch is not None and watch.client_gone():
                raise ClientDisconnected from None
            raise
        except UpstreamError as exc:
            if watch is not None:
                watch.stop()
            if mirror is not None:
                mirror.failed()
            self.metrics.observe(backend, decision.route, ERROR, perf_counter() - started)
            self.metrics.upstream_error(backend, exc.kind)
            await self.fail(send, scope, decision, exc)
            return
        answered = perf_counter()
        if watch is not None:
            watch.stop()
        self.metrics.observe(backend, decision.route, code_class(response.status),
                             answered - started)  # fmt: skip
        response_headers = client_response_headers(response.headers, self.response_extras(decision))
        if response.status in BODILESS:
            response_headers = [(n, v) for n, v in response_headers if n != b"content-length"]
        if mirror is not None:
            mirror.started(response.status, header_value(response.headers, b"content-type"))

        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": response_headers,
                }
            )
            await self.relay_body(response, receive, send, body_done, mirror)
        except UpstreamBodyError as exc:
            self.metrics.upstream_error(backend, exc.kind)
            raise
        finally:
            if mirror is not None:
                mirror.failed()  # a no-op when relay_body finished it
            await response.aclose()

    def mirror_for(
        self,
        scope: Scope,
        decision: Decision,
        upstream_headers: list[tuple[str, str]],
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
        body_done: asyncio.Event,
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
            asyncio.ensure_future(wait_for_disconnect(receive, response))
            if body_done.is_set()
            else None
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
                        return  # the client left and we aborted the read
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
        logger.warning("backend %s failed (%s): %s", backend, exc.kind, exc)
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
