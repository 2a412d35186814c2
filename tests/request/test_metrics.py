"""The metrics the request path and the control plane write, on a fresh registry."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from cutover.request.metrics import Metrics, code_class
from cutover.vocabulary import BreakerState, Phase


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (100, "1xx"),
        (200, "2xx"),
        (204, "2xx"),
        (302, "3xx"),
        (404, "4xx"),
        (503, "5xx"),
        (599, "5xx"),
        (99, "5xx"),
        (600, "5xx"),
    ],
)
def test_code_class(status: int, code: str) -> None:
    assert code_class(status) == code


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_observe_counts_and_times_each_request_by_migration() -> None:
    metrics = Metrics()
    metrics.observe("engine", "new", "default", "2xx", 0.004)
    metrics.observe("engine", "new", "default", "2xx", 0.002)
    metrics.observe("engine", "new", "default", "error", 0.5)
    metrics.observe("strategies", "new", "default", "2xx", 0.001)
    metrics.observe("none", "legacy", "/health", "2xx", 0.001)
    engine = {"migration": "engine", "backend": "new", "route": "default"}
    counted = {**engine, "cohort": "weight"}  # no cohort decided these
    assert sample(metrics, "cutover_requests_total", code="2xx", **counted) == 2
    assert sample(metrics, "cutover_requests_total", code="error", **counted) == 1
    assert sample(metrics, "cutover_request_duration_seconds_count", **engine) == 3
    assert sample(metrics, "cutover_request_duration_seconds_sum", **engine) == 0.506
    strategies = {**engine, "migration": "strategies"}
    assert sample(metrics, "cutover_requests_total", code="2xx", cohort="weight", **strategies) == 1
    assert sample(metrics, "cutover_request_duration_seconds_count", **strategies) == 1
    outside = {"migration": "none", "backend": "legacy", "route": "/health"}
    assert sample(metrics, "cutover_requests_total", code="2xx", cohort="weight", **outside) == 1


def test_upstream_errors_by_kind() -> None:
    metrics = Metrics()
    metrics.upstream_error("legacy", "connect")
    metrics.upstream_error("legacy", "connect")
    assert sample(metrics, "cutover_upstream_errors_total", backend="legacy", kind="connect") == 2


def test_one_phase_is_set_at_a_time_per_migration_and_every_phase_has_a_series() -> None:
    metrics = Metrics()
    metrics.set_phase("engine", Phase.PAUSED)
    metrics.set_phase("strategies", Phase.PROGRESSING)

    def phases(migration: str) -> dict[str, float | None]:
        return {
            phase: sample(metrics, "cutover_rollout_phase", migration=migration, phase=phase)
            for phase in Phase
        }

    assert phases("engine") == {phase: float(phase == Phase.PAUSED) for phase in Phase}
    assert phases("strategies") == {phase: float(phase == Phase.PROGRESSING) for phase in Phase}
    metrics.set_phase("engine", "promoted")  # type: ignore[arg-type]  # a plain string works
    assert phases("engine") == {phase: float(phase == Phase.PROMOTED) for phase in Phase}
    assert phases("strategies")["progressing"] == 1.0  # the other migration is untouched


def test_one_breaker_state_is_set_at_a_time_per_backend() -> None:
    metrics = Metrics()
    metrics.set_breaker_state("new", BreakerState.HALF_OPEN)
    metrics.set_breaker_state("v3", BreakerState.CLOSED)

    def states(backend: str) -> dict[str, float | None]:
        return {
            state: sample(metrics, "cutover_breaker_state", backend=backend, state=state)
            for state in BreakerState
        }

    assert states("new") == {"closed": 0.0, "open": 0.0, "half_open": 1.0}
    assert states("v3") == {"closed": 1.0, "open": 0.0, "half_open": 0.0}


def test_weights_by_migration() -> None:
    metrics = Metrics()
    metrics.set_weight("engine", 25.0)
    metrics.set_weight("strategies", 100.0)
    metrics.set_weight("engine", 50.0)
    assert sample(metrics, "cutover_split_weight", migration="engine") == 50.0
    assert sample(metrics, "cutover_split_weight", migration="strategies") == 100.0


def test_every_rollback_reason_and_the_promotions_exist_from_a_migrations_start() -> None:
    metrics = Metrics()
    assert sample(metrics, "cutover_rollbacks_total", migration="engine", reason="latency") is None
    metrics.add_migration("engine", "legacy", "new")
    info = {"migration": "engine", "from": "legacy", "to": "new"}
    assert sample(metrics, "cutover_migration_info", **info) == 1
    for reason in ("error_rate", "latency", "memory", "shadow", "operator"):
        assert sample(metrics, "cutover_rollbacks_total", migration="engine", reason=reason) == 0
    assert sample(metrics, "cutover_promotions_total", migration="engine") == 0
    metrics.rollbacks.labels(migration="engine", reason="latency").inc()
    metrics.promotions.labels(migration="engine").inc()
    metrics.add_migration("engine", "legacy", "new")  # again (a reload): the counts stay
    assert sample(metrics, "cutover_rollbacks_total", migration="engine", reason="latency") == 1
    assert sample(metrics, "cutover_promotions_total", migration="engine") == 1
    assert sample(metrics, "cutover_promotions_total", migration="strategies") is None


def test_guard_checks_baselines_and_shadow_requests_by_migration() -> None:
    metrics = Metrics()
    # labels() by keyword refuses a label the metric does not have: the names are the spec's.
    metrics.guard_checks.labels(migration="engine", check="latency", result="fail").inc()
    metrics.baseline_memory.labels(migration="engine", backend="new").set(1e8)
    metrics.shadow_requests.labels(migration="engine", route="default", result="match").inc()
    metrics.shadow_duration.labels(backend="new").observe(0.01)
    metrics.breaker_transitions.labels(backend="new", state="open").inc()
    engine = {"migration": "engine"}
    checks = {**engine, "check": "latency", "result": "fail"}
    assert metrics.registry.get_sample_value("cutover_guard_checks_total", checks) == 1
    baseline = {**engine, "backend": "new"}
    assert metrics.registry.get_sample_value("cutover_guard_baseline_memory_bytes", baseline) == 1e8
    shadow = {**engine, "route": "default", "result": "match"}
    assert metrics.registry.get_sample_value("cutover_shadow_requests_total", shadow) == 1
    assert sample(metrics, "cutover_shadow_duration_seconds_count", backend="new") == 1
    assert sample(metrics, "cutover_breaker_transitions_total", backend="new", state="open") == 1
    with pytest.raises(ValueError):
        metrics.guard_checks.labels(check="latency", result="fail")


def test_the_exposition_of_every_metric_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is not installed: the exposition is NOT linted (apt install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    metrics = Metrics()
    for migration in ("engine", "strategies"):
        metrics.add_migration(migration, "legacy", "new")
        metrics.set_phase(migration, Phase.PROGRESSING)
        metrics.set_weight(migration, 10.0)
        metrics.observe(migration, "new", "default", "2xx", 0.01)
        metrics.guard_checks.labels(migration, "error_rate", "pass").inc()
        metrics.baseline_memory.labels(migration, "new").set(1e8)
        metrics.shadow_requests.labels(migration, "default", "match").inc()
    metrics.observe("none", "legacy", "/health", "error", 0.01)
    metrics.upstream_error("legacy", "connect")
    metrics.set_breaker_state("new", BreakerState.OPEN)
    metrics.breaker_transitions.labels("new", "open").inc()
    metrics.backend_memory.labels("new").set(1e8)
    metrics.shadow_duration.labels("new").observe(0.01)
    metrics.config_reload_failures.inc()
    metrics.admin_auth_failures.inc()
    page = metrics.exposition().decode()
    requests = [line for line in page.splitlines() if line.startswith("cutover_requests_total{")]
    assert len(requests) == 3 and all("migration=" in line for line in requests)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (result.stdout + result.stderr).strip()  # no lint warning either
