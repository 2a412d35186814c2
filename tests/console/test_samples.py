"""The samples the charts draw: requests per second, error rate and p95 per migration and
backend over each interval, from the proxy's cumulative counters."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from cutover.console.samples import Sampler, between
from cutover.request.metrics import Metrics
from cutover.rollout.sources import BOUNDS, CounterSnapshot, read_counters

KEY = ("m", "new")


def snapshot(requests: float, errors: float, fast: float) -> CounterSnapshot:
    """``fast`` requests under 10 ms, the rest slower than every bound but +Inf."""
    cumulative = [fast] * (len(BOUNDS) - 1) + [requests]
    return CounterSnapshot({KEY: requests}, {KEY: errors}, {KEY: cumulative}, {})


def test_an_interval_gives_rate_error_rate_and_p95() -> None:
    traffic = between(snapshot(100, 1, 100), snapshot(300, 11, 290), 10.0)[KEY]
    assert traffic.rps == 20.0
    assert traffic.error_rate == pytest.approx(10 / 200)
    assert traffic.p95 is not None and traffic.p95 <= BOUNDS[0]
    slow = between(snapshot(0, 0, 0), snapshot(100, 0, 0), 10.0)[KEY]
    assert slow.p95 is not None and slow.p95 > BOUNDS[-2] * 0.9


def test_a_counter_that_went_down_counts_from_zero_and_no_requests_is_no_reading() -> None:
    traffic = between(snapshot(500, 5, 500), snapshot(50, 0, 50), 10.0)[KEY]
    assert traffic.rps == 5.0 and traffic.error_rate == 0.0
    idle = between(snapshot(50, 0, 50), snapshot(50, 0, 50), 10.0)[KEY]
    assert (idle.rps, idle.error_rate, idle.p95) == (0.0, None, None)


def test_the_sampler_keeps_an_hour_and_reads_the_live_counters() -> None:
    metrics = Metrics(CollectorRegistry())
    sampler = Sampler(metrics, lambda: {"m": 25.0}, every=10.0, kept_for=30.0)
    assert sampler.take(read_counters(metrics), 0.0) is None  # the first one is a baseline
    for _ in range(40):
        metrics.observe("m", "new", "r", "2xx", 0.002)
    sample = sampler.take(read_counters(metrics), 10.0)
    assert sample is not None and sample.weights == {"m": 25.0}
    assert sample.traffic[KEY].rps == 4.0
    for at in (20.0, 30.0, 40.0):
        sampler.take(read_counters(metrics), at)
    assert [s.at for s in sampler.samples] == [20.0, 30.0, 40.0]
    assert [s.at for s in sampler.since(30.0)] == [30.0, 40.0]
