"""Assembling the proxy listener's app from the settings: the upstream clients, the dual
run's comparer, the circuit breaker, handed to ``CutoverApp``. The request path builds
none of them itself, so it needs nothing of the control plane (``cutover.shadow``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx

from cutover.config import ConfigError, Settings
from cutover.request.access_log import AccessLog
from cutover.request.app import CutoverApp
from cutover.request.breaker import CircuitBreaker
from cutover.request.clients import ClientIdentifier
from cutover.request.metrics import Metrics
from cutover.request.usage import UsageRecorder
from cutover.shadow.log import ShadowLog
from cutover.shadow.mirror import Shadower
from cutover.upstream.base import Upstream
from cutover.upstream.http1 import Http1Upstream
from cutover.upstream.httpx_adapter import HttpxUpstream
from cutover.vocabulary import BreakerState

# The breaker's changes are logged under the name they had when the app built it.
logger = logging.getLogger("cutover.app")


def build_upstreams(
    settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> dict[str, Upstream]:
    upstreams: dict[str, Upstream] = {}
    for name, backend in settings.backends.items():
        if transport is None:
            upstreams[name] = Http1Upstream(backend.url, settings.timeouts, ca_file=backend.ca_file)
        else:
            upstreams[name] = HttpxUpstream(backend.url, settings.timeouts, transport)
    return upstreams


def build_shadower(
    settings: Settings, upstreams: dict[str, Upstream], metrics: Metrics
) -> Shadower | None:
    """The shadow comparer when any request is mirrored; ConfigError if its log cannot be
    opened."""
    if not settings.shadowing:
        return None
    config = settings.shadow
    try:
        log = ShadowLog(config.log_path, max_bytes=config.log_max_bytes, backups=config.log_backups)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([f"shadow.log_path: cannot open {config.log_path}: {reason}"]) from None
    return Shadower(config, upstreams, metrics, log=log)


def build_access_log(settings: Settings, metrics: Metrics) -> AccessLog | None:
    """The access log when ``access_log.enabled``; ConfigError if its file cannot be opened."""
    config = settings.access_log
    if not config.enabled:
        return None
    try:
        return AccessLog(config, metrics.access_log_dropped)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([f"access_log.path: cannot open {config.path}: {reason}"]) from None


def build_breakers(settings: Settings, metrics: Metrics) -> dict[str, CircuitBreaker]:
    """A circuit breaker in front of each backend some migration moves to (none when
    ``breaker.enabled`` is false)."""
    if not settings.breaker.enabled:
        return {}
    targets = dict.fromkeys(m.target for m in settings.migration_list)
    return {backend: _breaker(settings, metrics, backend) for backend in targets}


def _breaker(settings: Settings, metrics: Metrics, backend: str) -> CircuitBreaker:
    metrics.set_breaker_state(backend, BreakerState.CLOSED)

    def changed(previous: BreakerState, state: BreakerState) -> None:
        metrics.set_breaker_state(backend, state)
        metrics.breaker_transitions.labels(backend, state).inc()
        log = logger.warning if state == BreakerState.OPEN else logger.info
        log("circuit breaker on %s: %s -> %s", backend, previous, state)

    return CircuitBreaker(settings.breaker, on_change=changed)


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    metrics: Metrics | None = None,
    recorder: UsageRecorder | None = None,
    identifier: ClientIdentifier | None = None,
    clock: Callable[[], float] = time.time,
) -> CutoverApp:
    """Build the proxy listener's app. ``transport`` replaces the HTTP/1.1 client (tests
    pass respx); ``metrics`` shares a registry with the admin listener; ``clock`` (Unix
    seconds) places the deprecation's brownouts and sunset."""
    metrics = metrics if metrics is not None else Metrics()
    upstreams = build_upstreams(settings, transport)
    shadower = build_shadower(settings, upstreams, metrics)
    breakers = build_breakers(settings, metrics)
    if recorder is None:
        recorder = UsageRecorder(metrics.deprecated_request, max_clients=settings.usage.max_clients)
    if identifier is None:
        identifier = ClientIdentifier(settings.clients)
    return CutoverApp(settings, metrics, upstreams, shadower, breakers,
                      recorder=recorder, identifier=identifier,
                      access_log=build_access_log(settings, metrics), clock=clock)  # fmt: skip
