"""The metrics the request path and the control plane write, on a fresh registry."""

from __future__ import annotations

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


def test_observe_counts_and_times_each_request() -> None:
    metrics = Metrics()
    metrics.observe("new", "default", "2xx", 0.004)
    metrics.observe("new", "default", "2xx", 0.002)
    metrics.observe("new", "default", "error", 0.5)
    labels = {"backend": "new", "route": "default"}
    assert sample(metrics, "cutover_requests_total", code="2xx", **labels) == 2
    assert sample(metrics, "cutover_requests_total", code="error", **labels) == 1
    assert sample(metrics, "cutover_request_duration_seconds_count", **labels) == 3


def test_upstream_errors_by_kind() -> None:
    metrics = Metrics()
    metrics.upstream_error("legacy", "connect")
    metrics.upstream_error("legacy", "connect")
    assert sample(metrics, "cutover_upstream_errors_total", backend="legacy", kind="connect") == 2


def test_one_phase_is_set_at_a_time_and_every_phase_has_a_series() -> None:
    metrics = Metrics()
    metrics.set_phase(Phase.PAUSED)
    values = {phase: sample(metrics, "cutover_rollout_phase", phase=phase) for phase in Phase}
    assert values == {phase: (1.0 if phase == Phase.PAUSED else 0.0) for phase in Phase}
    metrics.set_phase("promoted")  # type: ignore[arg-type]  # a plain string works as well
    assert sample(metrics, "cutover_rollout_phase", phase="promoted") == 1.0
    assert sample(metrics, "cutover_rollout_phase", phase="paused") == 0.0


def test_one_breaker_state_is_set_at_a_time() -> None:
    metrics = Metrics()
    metrics.set_breaker_state(BreakerState.HALF_OPEN)
    values = {
        state: sample(metrics, "cutover_breaker_state", state=state) for state in BreakerState
    }
    assert values == {"closed": 0.0, "open": 0.0, "half_open": 1.0}


def test_weights_by_route() -> None:
    metrics = Metrics()
    metrics.set_weights([("default", 25.0), ("/api/", 100.0)])
    assert sample(metrics, "cutover_split_weight", route="/api/") == 100.0


def test_every_rollback_reason_exists_from_the_start() -> None:
    metrics = Metrics()
    for reason in ("error_rate", "latency", "memory", "shadow", "operator"):
        assert sample(metrics, "cutover_rollbacks_total", reason=reason) == 0
