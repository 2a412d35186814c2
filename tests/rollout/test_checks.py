from __future__ import annotations

import math

import numpy as np
import pytest

from cutover.rollout.checks import (
    Verdict,
    error_rate_check,
    histogram_quantile,
    latency_check,
    memory_check,
)
from cutover.vocabulary import CheckResult

BOUNDS = [0.01, 0.02, 0.05, 0.1, math.inf]


def test_quantile_interpolates_inside_the_bucket() -> None:
    # 100 observations, all in (0.02, 0.05]: p95 is 95 % of the way through that bucket.
    assert histogram_quantile(0.95, BOUNDS, [0, 0, 100, 0, 0]) == pytest.approx(0.0485)
    assert histogram_quantile(0.5, BOUNDS, [50, 50, 0, 0, 0]) == pytest.approx(0.01)


def test_quantile_of_an_empty_histogram_is_nan() -> None:
    assert math.isnan(histogram_quantile(0.95, BOUNDS, [0, 0, 0, 0, 0]))


def test_quantile_in_the_inf_bucket_reports_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.95, BOUNDS, [1, 0, 0, 0, 99]) == 0.1


def test_quantile_matches_numpy_on_fine_buckets() -> None:
    rng = np.random.default_rng(3)
    samples = rng.lognormal(mean=-4, sigma=0.5, size=50_000)
    bounds = np.append(np.geomspace(1e-4, 10, 400), math.inf)
    counts = np.histogram(samples, bins=np.concatenate([[0], bounds]))[0]
    assert histogram_quantile(0.95, bounds, counts) == pytest.approx(
        np.quantile(samples, 0.95), rel=0.02
    )


def test_quantile_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError):
        histogram_quantile(0.5, [1, 2], [1])


@pytest.mark.parametrize(
    ("requests", "errors", "result"),
    [
        (100, 5, CheckResult.PASS),  # exactly at the threshold passes
        (100, 6, CheckResult.FAIL),
        (49, 49, CheckResult.NODATA),  # below min_requests: never fails, never passes
        (None, None, CheckResult.NODATA),
        (math.nan, 3, CheckResult.NODATA),
        (0, 0, CheckResult.NODATA),
    ],
)
def test_error_rate(requests, errors, result) -> None:
    verdict = error_rate_check(requests, errors, max_error_rate=0.05, min_requests=50)
    assert verdict.result is result
    assert verdict.threshold == 0.05
    if result is CheckResult.FAIL:
        assert verdict.value == pytest.approx(0.06)


@pytest.mark.parametrize(
    ("new", "legacy", "requests", "result"),
    [
        (0.1, 0.05, 100, CheckResult.PASS),  # ratio exactly 2.0
        (0.11, 0.05, 100, CheckResult.FAIL),
        (0.11, 0.05, 10, CheckResult.NODATA),  # too little traffic to new
        (0.11, None, 100, CheckResult.NODATA),  # no legacy baseline at all
        (0.11, 0.0, 100, CheckResult.NODATA),  # zero legacy latency is no baseline
        (math.nan, 0.05, 100, CheckResult.NODATA),
        (0.11, math.nan, 100, CheckResult.NODATA),
    ],
)
def test_latency(new, legacy, requests, result) -> None:
    verdict = latency_check(
        new, legacy, new_requests=requests, max_latency_ratio=2.0, min_requests=50
    )
    assert verdict.result is result


def test_latency_details_name_the_migrations_two_backends() -> None:
    def latency(new: float | None, legacy: float | None, requests: float) -> Verdict:
        return latency_check(
            new, legacy, new_requests=requests, max_latency_ratio=2.0, min_requests=50,
            names=("engine-v2", "simulator"),
        )  # fmt: skip

    assert latency(0.3, 0.1, 100).detail == "p95 engine-v2 300.0 ms vs simulator 100.0 ms"
    assert latency(0.3, 0.1, 10).detail == "too few requests to engine-v2"
    assert latency(0.3, None, 100).detail == "no simulator latency to compare with"


@pytest.mark.parametrize(
    ("current", "baseline", "result"),
    [
        (150, 100, CheckResult.PASS),
        (151, 100, CheckResult.FAIL),
        (None, 100, CheckResult.NODATA),
        (150, None, CheckResult.NODATA),
        (150, 0, CheckResult.NODATA),
        (math.nan, 100, CheckResult.NODATA),
    ],
)
def test_memory(current, baseline, result) -> None:
    assert memory_check(current, baseline, max_memory_ratio=1.5).result is result
