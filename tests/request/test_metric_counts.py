"""The request path's series counted in plain numbers: scraped, they read as prometheus-client's
own Counter and Histogram would, and the guard's embedded source reads them."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from cutover.request.metric_counts import DURATION_LABELS, REQUEST_LABELS
from cutover.request.metrics import DURATION_HELP, LATENCY_BUCKETS, REQUESTS_HELP, Metrics
from cutover.rollout.sources import BOUNDS, read_counters

TIMES = (0.0005, 0.001, 0.0011, 0.03, 30.0, 31.0)  # on a bound counts in it; past 30 s: +Inf
MOVED = (
    "cutover_requests",
    "cutover_request_duration_seconds",
    "cutover_upstream_errors",
    "cutover_deprecated_requests",
    "cutover_brownout_requests",
    "cutover_sunset_requests",
)


def requests_on_the_path(metrics: Metrics) -> None:
    for seconds in TIMES:
        metrics.observe("engine", "new", "default", "2xx", seconds)
    metrics.observe("engine", "legacy", "/api/", "error", 0.2, "beta")
    metrics.upstream_error("legacy", "connect")
    metrics.upstream_error("legacy", "connect")
    metrics.deprecated_request("engine")
    metrics.lifecycle_outcome("brownout", "engine", "refused")
    metrics.lifecycle_outcome("sunset", "engine", "gone")


def families(page: str, names: tuple[str, ...]) -> list[str]:
    """The lines of these families, their _created values (when each started) masked."""
    pattern = re.compile(rf"^(# (HELP|TYPE) )?({'|'.join(names)})(_[a-z]+)?[ {{]")
    kept = [line for line in page.splitlines() if pattern.match(line)]
    return [re.sub(r"(_created(\{.*\})?) \S+$", r"\1 T", line) for line in kept]


def client_library_exposition() -> str:
    """The same requests counted by prometheus-client's series, as before."""
    r = CollectorRegistry()
    requests = Counter("cutover_requests", REQUESTS_HELP, REQUEST_LABELS, registry=r)
    durations = Histogram("cutover_request_duration_seconds", DURATION_HELP, DURATION_LABELS,
                          buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
    helps = {family.name: family.documentation for family in Metrics().collect()}
    errors, deprecated, brownouts, sunsets = (
        Counter(name, helps[name], labels, registry=r)
        for name, labels in (
            ("cutover_upstream_errors", ("backend", "kind")),
            ("cutover_deprecated_requests", ("migration",)),
            ("cutover_brownout_requests", ("migration", "outcome")),
            ("cutover_sunset_requests", ("migration", "outcome")),
        )
    )
    for seconds in TIMES:
        requests.labels("engine", "new", "default", "2xx", "weight").inc()
        durations.labels("engine", "new", "default").observe(seconds)
    requests.labels("engine", "legacy", "/api/", "error", "beta").inc()
    durations.labels("engine", "legacy", "/api/").observe(0.2)
    errors.labels("legacy", "connect").inc(2)
    deprecated.labels("engine").inc()
    brownouts.labels("engine", "refused").inc()
    sunsets.labels("engine", "gone").inc()
    return generate_latest(r).decode()


def test_the_scrape_reads_as_prometheus_clients_own_series() -> None:
    metrics = Metrics()
    requests_on_the_path(metrics)
    page = metrics.exposition().decode()
    assert families(page, MOVED) == families(client_library_exposition(), MOVED)
    # Each family once: the counts' collectors stand in for the client library's series.
    types = [line.split()[2] for line in page.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    sample = metrics.registry.get_sample_value
    new = {"migration": "engine", "backend": "new", "route": "default"}
    for le, count in (("0.001", 2), ("0.0015", 3), ("0.03", 4), ("30.0", 5), ("+Inf", 6)):
        assert sample("cutover_request_duration_seconds_bucket", {**new, "le": le}) == count
    assert sample("cutover_request_duration_seconds_count", new) == 6
    assert sample("cutover_request_duration_seconds_sum", new) == sum(TIMES)
    assert sample("cutover_requests_total", {**new, "code": "2xx", "cohort": "weight"}) == 6
    assert sample("cutover_upstream_errors_total", {"backend": "legacy", "kind": "connect"}) == 2


def test_a_second_series_of_a_counted_name_is_refused() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("cutover_upstream_errors", "again", ["backend"], registry=metrics.registry)


def test_the_embedded_source_reads_the_counts() -> None:
    metrics = Metrics()
    requests_on_the_path(metrics)
    snapshot = read_counters(metrics)
    assert snapshot.requests == {("engine", "new"): 6.0, ("engine", "legacy"): 1.0}
    assert snapshot.errors == {("engine", "legacy"): 1.0}
    cumulative = snapshot.bucket(("engine", "new"))
    assert cumulative[BOUNDS.index(0.0015)] == 3 and cumulative[-1] == 6
    assert snapshot.bucket(("engine", "legacy"))[BOUNDS.index(0.2)] == 1
