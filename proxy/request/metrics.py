"""Cutover's Prometheus metrics, on a registry the app owns (tests build a fresh one).

In one process the series the request path updates (requests and their durations, upstream
errors, deprecated, brownout and sunset requests) are plain numbers in dicts, exposed by
collectors at scrape time (metric_counts.py); with ``--workers N`` they are prometheus-client's
series, their children kept in dicts here (``labels()`` takes a lock on every call).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from cutover.request.client_deadlines import Owed
from cutover.request.metric_counts import (
    DURATION_LABELS,
    REQUEST_LABELS,
    RequestCounts,
    hot_counter,
)
from cutover.vocabulary import BreakerState, Phase

# Roughly ×1.5 steps from 1 ms to 30 s: fine enough for p95 ratios, few enough series.
LATENCY_BUCKETS = (
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0,
)  # fmt: skip
CODE_CLASSES = ("1xx", "1xx", "2xx", "3xx", "4xx", "5xx")
ERROR = "error"
REQUESTS_HELP = (
    "Requests answered, by migration (none: outside every migration), backend, route, status "
    "class (error: no upstream response) and the cohort that decided (weight: none did)."
)
DURATION_HELP = "Time from sending a request to the backend to its response headers."
ROLLBACK_REASONS = ("error_rate", "latency", "memory", "shadow", "operator")


def code_class(status: int) -> str:
    return CODE_CLASSES[status // 100] if 100 <= status < 600 else "5xx"


class Metrics:
    def __init__(
        self, registry: CollectorRegistry | None = None, *, multiprocess_dir: str | None = None
    ) -> None:
        """``multiprocess_dir``: with several workers, the PROMETHEUS_MULTIPROC_DIR they all
        write to (prometheus-client's multiprocess mode); exposition then sums the workers."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        r = self.registry
        # One process counts its requests in plain numbers (metric_counts.py); workers count
        # them in prometheus-client's files, for the exposition to sum them.
        plain = multiprocess_dir is None
        self.counts: RequestCounts | None = None
        if plain:
            self.counts = RequestCounts(LATENCY_BUCKETS, REQUESTS_HELP, DURATION_HELP)
            r.register(self.counts)
        else:
            self.requests = Counter("cutover_requests", REQUESTS_HELP, REQUEST_LABELS,
                                    registry=r)  # fmt: skip
            self.request_duration = Histogram("cutover_request_duration_seconds", DURATION_HELP,
                                              DURATION_LABELS, buckets=LATENCY_BUCKETS,
                                              registry=r)  # fmt: skip
        self.upstream_errors = hot_counter(
            r, "cutover_upstream_errors",
            "Requests for which the backend gave no usable response, by kind.",
            ("backend", "kind"), plain=plain,
        )  # fmt: skip
        self.split_weight = Gauge(
            "cutover_split_weight", "Percent of a migration's traffic sent to its to backend.",
            ["migration"],
            registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.migration_info = Gauge(
            "cutover_migration_info",
            "1 for each configured migration, labelled with its from and to backends (join on "
            "migration to compare a migration's two backends).",
            ["migration", "from", "to"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.rollout_phase = Gauge(
            "cutover_rollout_phase", "1 for a migration's current phase, 0 for the others.",
            ["migration", "phase"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.rollbacks = Counter(
            "cutover_rollbacks", "Rollbacks by migration and reason (failing check, operator).",
            ["migration", "reason"], registry=r,
        )  # fmt: skip
        self.promotions = Counter(
            "cutover_promotions", "Promotions to the next rollout stage, by migration.",
            ["migration"], registry=r,
        )  # fmt: skip
        self.backend_memory = Gauge(
            "cutover_backend_resident_memory_bytes",
            "Resident memory of each backend, scraped from its /metrics.",
            ["backend"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.baseline_memory = Gauge(
            "cutover_guard_baseline_memory_bytes",
            "The memory check's baseline: the backend's resident memory when the migration's "
            "rollout started.",
            ["migration", "backend"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.guard_checks = Counter(
            "cutover_guard_checks", "Guard check results, by migration, check and result.",
            ["migration", "check", "result"], registry=r,
        )  # fmt: skip
        self.config_reload_failures = Counter(
            "cutover_config_reload_failures",
            "Config reloads refused because the new config was invalid.",
            registry=r,
        )
        self.shadow_requests = Counter(
            "cutover_shadow_requests",
            "Mirrored requests by migration, route and comparison result "
            "(match, mismatch, error, dropped).",
            ["migration", "route", "result"],
            registry=r,
        )
        self.shadow_duration = Histogram(
            "cutover_shadow_duration_seconds",
            "Time for a mirrored request's whole response, by the backend that served it.",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.breaker_state = Gauge(
            "cutover_breaker_state",
            "1 for the current state of the breaker in front of a backend, 0 for the others.",
            ["backend", "state"],
            registry=r,
            multiprocess_mode="liveall",  # each worker has its own breaker
        )
        self.breaker_transitions = Counter(
            "cutover_breaker_transitions",
            "Circuit breaker state changes, by backend and the state entered.",
            ["backend", "state"],
            registry=r,
        )
        self.websocket_connections = Gauge(
            "cutover_websocket_connections",
            "Open WebSockets, by migration and the backend they were routed to.",
            ["migration", "backend"], registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.websocket_handshakes = Counter(
            "cutover_websocket_handshakes",
            "WebSocket handshakes sent to a backend, by migration, backend and result "
            "(accepted: its 101; refused: another answer, relayed; failed: none, 502/504).",
            ["migration", "backend", "result"], registry=r,
        )  # fmt: skip
        self.state_store_up = Gauge(
            "cutover_state_store_up",
            "1 while the state store answers (Redis; the file backend's is always 1), "
            "0 while it is unreachable.",
            registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.state_writes = Counter(
            "cutover_state_writes",
            "Writes of a migration's state to the shared store, by result "
            "(ok, conflict, fenced, error).",
            ["result"], registry=r,
        )  # fmt: skip
        self.guard_leader = Gauge(
            "cutover_guard_leader", "1 on the process that leads the fleet's guard, else 0.",
            registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.admin_auth_failures = Counter(
            "cutover_admin_auth_failures",
            "Admin API calls refused for a missing or wrong token.",
            registry=r,
        )
        self.deprecated_requests = hot_counter(
            r, "cutover_deprecated_requests",
            "Requests a migration with a deprecation sent to its from backend (the usage "
            "report names the clients).",
            ("migration",), plain=plain,
        )  # fmt: skip
        self.brownout_requests = hot_counter(
            r, "cutover_brownout_requests",
            "Requests a brownout window met, by migration and outcome (refused; dry_run: would "
            "have been refused; exempt: an exempt client, served).",
            ("migration", "outcome"), plain=plain,
        )  # fmt: skip
        self.sunset_requests = hot_counter(
            r, "cutover_sunset_requests",
            "Requests for a migration's from after its sunset, by outcome (gone: 410; "
            "routed_to_new; served: after_sunset keep).",
            ("migration", "outcome"), plain=plain,
        )  # fmt: skip
        self.client_timeouts = Counter(
            "cutover_client_timeouts",
            "Requests refused with 408 because their client sent its head or its body (wait) "
            "too slowly (limits.header_timeout, limits.body_timeout).",
            ["wait"], registry=r,
        )  # fmt: skip
        for wait in (Owed.HEAD, Owed.BODY):  # at 0 from the start: a panel reads 0, not nothing
            self.client_timeouts.labels(wait)
        self.access_log_dropped = Counter(
            "cutover_access_log_dropped", "Access log lines dropped: the queue was full, or "
            "writing failed.", registry=r,
        )  # fmt: skip
        self._children: dict[tuple[str, str, str, str, str], tuple[Counter, Histogram]] = {}

    def collect(self) -> Iterable[Metric]:
        """Every metric family, summed over the workers in multiprocess mode."""
        if self.multiprocess_dir is None:
            return self.registry.collect()
        return MultiProcessCollector(None, path=self.multiprocess_dir).collect()

    def exposition(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def add_migration(self, migration: str, source: str, target: str) -> None:
        """Every rollback reason and the promotion count exist from the start, so "a rollback
        happened" is a change from 0."""
        self.migration_info.labels(migration, source, target).set(1)
        for reason in ROLLBACK_REASONS:
            self.rollbacks.labels(migration, reason)
        self.promotions.labels(migration)

    def forget_migration(self, migration: str) -> None:
        """Drop a migration no longer configured from the gauges that describe the present
        (its counters stay: they count what happened). In-process only: with several workers
        a gauge's last value stays in the worker's metric file until a restart."""
        for gauge, labels in (
            (self.split_weight, [(migration,)]),
            (self.rollout_phase, [(migration, phase) for phase in Phase]),
        ):
            for values in labels:
                with contextlib.suppress(KeyError):
                    gauge.remove(*values)

    def observe(
        self,
        migration: str,
        backend: str,
        route: str,
        code: str,
        seconds: float,
        cohort: str = "weight",
    ) -> None:
        """One answered request; ``code`` is a status class or ``error``, ``cohort`` the
        label of the cohort that sent it (``weight``: none did)."""
        counts = self.counts
        if counts is not None:
            counts.add((migration, backend, route, code, cohort), (migration, backend, route),
                       seconds)  # fmt: skip
            return
        key = (migration, backend, route, code, cohort)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(migration, backend, route, code, cohort),
                self.request_duration.labels(migration, backend, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def deprecated_request(self, migration: str) -> None:
        self.deprecated_requests.inc((migration,))

    def client_timeout(self, wait: str) -> None:
        self.client_timeouts.labels(wait).inc()

    def upstream_error(self, backend: str, kind: str) -> None:
        self.upstream_errors.inc((backend, kind))

    def lifecycle_outcome(
        self, which: Literal["brownout", "sunset"], migration: str, outcome: str
    ) -> None:
        """One request a brownout (``which`` "brownout") or a sunset ("sunset") decided."""
        counter = self.brownout_requests if which == "brownout" else self.sunset_requests
        counter.inc((migration, outcome))

    def set_phase(self, migration: str, phase: Phase) -> None:
        for name in Phase:
            self.rollout_phase.labels(migration, name).set(1 if name == phase else 0)

    def set_weight(self, migration: str, weight: float) -> None:
        self.split_weight.labels(migration).set(weight)

    def set_breaker_state(self, backend: str, state: BreakerState) -> None:
        for name in BreakerState:
            self.breaker_state.labels(backend, name).set(1 if name == state else 0)
