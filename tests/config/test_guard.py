"""cutover.config.guard: the guard's thresholds, its source and Prometheus' queries."""

from __future__ import annotations

from cutover.config import DEFAULT_QUERIES, GuardConfig, PrometheusQueriesConfig, parse_settings
from tests.config import BACKENDS, problems


def test_every_reading_has_a_default_query_over_the_window() -> None:
    queries = PrometheusQueriesConfig().model_dump()
    assert queries == DEFAULT_QUERIES
    assert all("$window" in query for name, query in queries.items() if name != "new_memory")


def test_the_window_covers_the_interval() -> None:
    found = problems({"backends": BACKENDS, "guard": {"interval": 10, "window": 5}})
    assert found == ["guard: window must be at least as long as interval"]
    assert GuardConfig(interval=5, window=5).window == 5


def test_the_source_and_its_urls() -> None:
    guard = {"source": "prometheus", "prometheus": {"url": "http://prom:9090/"}}
    settings = parse_settings({"backends": BACKENDS, "guard": guard})
    assert (settings.guard.source, settings.guard.prometheus.url) == (
        "prometheus",
        "http://prom:9090",
    )
    found = problems(
        {"backends": BACKENDS, "guard": {"source": "graphite", "webhook": "ftp://hook"}}
    )
    assert "guard.source: Input should be 'embedded' or 'prometheus'" in found
    assert "guard.webhook: must be an http:// or https:// URL" in found
