"""The request path's side of the dual run: which requests are mirrored, the ``Mirror`` that
carries the primary's answer to the comparison, and the ``DualRun`` it is handed to.

The comparison itself (the shadow call, the diff, the log) is ``cutover.shadow.mirror``'s
``Shadower``, which the assembly hands to the forwarder as its ``DualRun``; nothing here
imports it."""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from cutover.config import RouteShadowConfig, ShadowConfig
from cutover.request.splitter import Decision
from cutover.request.target import target_url
from cutover.types import RawHeaders, Scope
from cutover.vocabulary import ShadowResult


class Mirror:
    """One mirrored request: carries the primary's answer to the comparison."""

    def __init__(
        self,
        *,
        migration: str,
        route: str,
        rule: RouteShadowConfig,
        method: str,
        path: str,
        query: str,
        headers: RawHeaders,
        body: bytes | None,
        primary_backend: str,
        shadow_backend: str,
        shadow_url: str,
        cap: int,
    ) -> None:
        self.migration = migration
        self.route = route
        self.rule = rule
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.primary_backend = primary_backend
        self.shadow_backend = shadow_backend
        self.shadow_url = shadow_url
        self._cap = cap
        self.status = 0
        self._type: str | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self.too_large = False
        self.launched = False  # the shadow call was started (DualRun.start)
        self.client_left = False
        self.primary: asyncio.Future[tuple[int, str | None, bytes] | None] = (
            asyncio.get_running_loop().create_future()
        )

    def started(self, status: int, content_type: str | None) -> None:
        self.status, self._type = status, content_type

    def capture(self, chunk: bytes) -> None:
        if self.too_large or not chunk:
            return
        self._size += len(chunk)
        if self._size > self._cap:
            self.too_large = True
            self._chunks.clear()
        else:
            self._chunks.append(chunk)

    def finished(self) -> None:
        if not self.primary.done():
            body = None if self.too_large else b"".join(self._chunks)
            self.primary.set_result(None if body is None else (self.status, self._type, body))

    def failed(self) -> None:
        if not self.primary.done():
            self.primary.set_result(None)

    def left(self) -> bool:
        """The client left before its answer was complete; False if already settled."""
        if self.primary.done():
            return False
        self.client_left = True
        self.primary.set_result(None)
        return True


@runtime_checkable
class DualRun(Protocol):
    """What the forwarder needs of the dual run (``cutover.shadow.mirror.Shadower`` is one)."""

    config: ShadowConfig

    def sampled(self, rule: RouteShadowConfig, method: str) -> bool:
        """Whether this request is drawn for a comparison."""
        ...

    def record(self, migration: str, route: str, result: ShadowResult) -> None:
        """Count one mirrored request's end."""
        ...

    def start(self, mirror: Mirror) -> bool:
        """Launch the shadow call; False (counted dropped, ``mirror`` settled) when it cannot."""
        ...

    def client_left(self, mirror: Mirror) -> None:
        """The mirror's client left before its answer was complete."""
        ...

    async def aclose(self) -> None: ...


def mirror_for(
    dual_run: DualRun | None,
    scope: Scope,
    decision: Decision,
    upstream_headers: RawHeaders,
    length: int | None,
    has_body: bool,
    base_urls: dict[str, str],
) -> Mirror | None:
    """A Mirror when this request is sampled for a shadow comparison, else None."""
    rule = decision.shadow
    method = scope["method"]
    migration = decision.migration
    if dual_run is None or rule is None or migration is None:
        return None
    other = migration.other(decision.backend)
    if other is None or not dual_run.sampled(rule, method):
        return None
    if has_body and (length is None or length > dual_run.config.max_body):
        # too big (or unknown) to replay
        dual_run.record(migration.name, decision.route, ShadowResult.DROPPED)
        return None
    return Mirror(
        migration=migration.name,
        route=decision.route,
        rule=rule,
        method=method,
        path=scope["path"],
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=upstream_headers,
        body=None,
        primary_backend=decision.backend,
        shadow_backend=other,
        shadow_url=target_url(base_urls[other], scope),
        cap=dual_run.config.max_response_body,
    )
