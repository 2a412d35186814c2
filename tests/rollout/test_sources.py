"""Where the guard's readings come from: the proxy's counters read at one instant, the
embedded source's sliding window over them, and each backend's resident memory."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest
import respx

from cutover.request.metrics import Metrics
from cutover.rollout.sources import (
    BOUNDS,
    EmbeddedSource,
    MemoryScraper,
    Observation,
    ScrapeError,
    Subject,
    difference,
    read_counters,
    resident_memory,
)

pytestmark = pytest.mark.anyio

NEW_METRICS = "http://new.test/metrics"
MEMORY_PAGE = (
    "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
    "# TYPE process_resident_memory_bytes gauge\n"
    "process_resident_memory_bytes 1048576.0\n"
)


ENGINE = Subject("trade-engine", source="legacy", target="new")
STRATEGIES = Subject("strategies", source="legacy", target="new")


def test_the_counters_of_one_instant() -> None:
    metrics = Metrics()
    before = read_counters(metrics)
    assert (before.requests, before.errors, before.shadow) == ({}, {}, {})
    for code in ("2xx", "5xx", "error", "4xx"):
        metrics.observe("trade-engine", "new", "default", code, 0.01)
    metrics.observe("trade-engine", "legacy", "default", "2xx", 0.3)
    # Another migration's requests, to the same backends, and one outside every migration.
    for _ in range(5):
        metrics.observe("strategies", "new", "default", "5xx", 2.0)
    metrics.observe("none", "legacy", "pinned", "2xx", 4.0)
    for result in ("match", "match", "mismatch", "dropped"):
        metrics.shadow_requests.labels("trade-engine", "default", result).inc()
    metrics.shadow_requests.labels("strategies", "default", "mismatch").inc()
    after = read_counters(metrics)
    assert after.requests == {
        ("trade-engine", "new"): 4, ("trade-engine", "legacy"): 1,
        ("strategies", "new"): 5, ("none", "legacy"): 1,
    }  # fmt: skip
    assert after.errors == {("trade-engine", "new"): 2, ("strategies", "new"): 5}
    engine_new = after.buckets[("trade-engine", "new")]
    assert engine_new[-1] == 4 and len(engine_new) == len(BOUNDS)
    assert after.shadow == {
        ("trade-engine", "match"): 2, ("trade-engine", "mismatch"): 1,
        ("trade-engine", "dropped"): 1, ("strategies", "mismatch"): 1,
    }  # fmt: skip
    seen = difference(after, before, ENGINE)
    assert (seen.new_requests, seen.new_errors, seen.legacy_requests) == (4, 2, 1)
    # Compared: matches and mismatches; errors and dropped mirrors were never compared.
    assert (seen.shadow_comparisons, seen.shadow_mismatches) == (3, 1)
    assert seen.new_p95 is not None and seen.new_p95 <= 0.01
    assert seen.legacy_p95 is not None and 0.25 < seen.legacy_p95 <= 0.5
    assert difference(after, after, ENGINE).new_p95 is None  # nothing in the window
    other = difference(after, before, STRATEGIES)
    assert (other.new_requests, other.new_errors, other.legacy_requests) == (5, 5, 0)
    assert (other.shadow_comparisons, other.shadow_mismatches) == (1, 1)
    assert other.new_p95 is not None and 1.0 < other.new_p95 <= 2.5
    assert other.legacy_p95 is None  # the pinned request is no migration's


def test_the_from_of_one_migration_can_be_the_to_of_another() -> None:
    metrics = Metrics()
    before = read_counters(metrics)
    metrics.observe("forward", "new", "default", "5xx", 0.01)
    metrics.observe("backward", "new", "default", "2xx", 0.01)
    metrics.observe("backward", "legacy", "default", "2xx", 0.01)
    after = read_counters(metrics)
    forward = difference(after, before, Subject("forward", source="legacy", target="new"))
    backward = difference(after, before, Subject("backward", source="new", target="legacy"))
    assert (forward.new_requests, forward.new_errors, forward.legacy_requests) == (1, 1, 0)
    assert (backward.new_requests, backward.new_errors, backward.legacy_requests) == (1, 0, 1)


async def test_embedded_window_counts_only_recent_requests() -> None:
    metrics = Metrics()
    source = EmbeddedSource(metrics, window=60)

    async def observe(now: float) -> Observation:
        return (await source.observe(now, [ENGINE]))["trade-engine"]

    for _ in range(100):
        metrics.observe("trade-engine", "new", "default", "2xx", 0.01)
    assert (await observe(0)).new_requests is None  # the first snapshot is the base
    for _ in range(40):
        metrics.observe("trade-engine", "new", "default", "5xx", 0.2)
    for _ in range(60):
        metrics.observe("trade-engine", "legacy", "/api/", "2xx", 0.01)
    seen = await observe(30)
    assert (seen.new_requests, seen.new_errors, seen.legacy_requests) == (40, 40, 60)
    assert 0.15 < seen.new_p95 <= 0.2
    assert seen.legacy_p95 <= 0.01
    metrics.observe("trade-engine", "new", "default", "error", 0.5)
    # The base is the newest snapshot at least a window old: at 61 that is still the one
    # at 0 (the one at 30 is too recent); at 91 it is the one at 30.
    assert (await observe(61)).new_requests == 41
    later = await observe(91)
    assert (later.new_requests, later.new_errors) == (1, 1)
    assert later.recent is not None and later.recent.new_requests == 0  # since 61


async def test_embedded_window_starts_again_at_since() -> None:
    metrics = Metrics()
    source = EmbeddedSource(metrics, window=60)
    await source.observe(0, [ENGINE, STRATEGIES])
    for name in ("trade-engine", "strategies"):
        for _ in range(40):
            metrics.observe(name, "new", "default", "5xx", 0.2)
    seen = await source.observe(5, [ENGINE, STRATEGIES])
    assert (seen["trade-engine"].new_errors, seen["strategies"].new_errors) == (40, 40)
    # trade-engine restarted at 7: the first reading after it is the base, then only what
    # follows; strategies, in the same evaluations, still sees its whole window.
    restarted = replace(ENGINE, since=7)
    seen = await source.observe(10, [restarted, STRATEGIES])
    assert seen["trade-engine"].new_requests is None
    assert seen["strategies"].new_errors == 40
    for name in ("trade-engine", "strategies"):
        for _ in range(10):
            metrics.observe(name, "new", "default", "2xx", 0.01)
    seen = await source.observe(15, [restarted, STRATEGIES])
    assert (seen["trade-engine"].new_requests, seen["trade-engine"].new_errors) == (10, 0)
    assert (seen["strategies"].new_requests, seen["strategies"].new_errors) == (50, 40)


def test_resident_memory() -> None:
    assert resident_memory(MEMORY_PAGE) == 2**20
    with pytest.raises(ScrapeError, match="no process_resident_memory_bytes"):
        resident_memory("# nothing here\n")


async def test_a_scrape_sets_the_gauge_and_a_failed_one_is_a_scrape_error() -> None:
    metrics = Metrics()

    def gauge() -> float | None:
        labels = {"backend": "new"}
        return metrics.registry.get_sample_value("cutover_backend_resident_memory_bytes", labels)

    with respx.MockRouter(assert_all_mocked=True) as router:
        route = router.get(NEW_METRICS)
        transport = httpx.MockTransport(router.async_handler)
        scraper = MemoryScraper({"new": NEW_METRICS}, metrics, transport=transport)
        route.return_value = httpx.Response(200, text=MEMORY_PAGE)
        assert await scraper.scrape("new") == 2**20
        assert gauge() == 2**20
        route.return_value = httpx.Response(503)
        with pytest.raises(ScrapeError, match=NEW_METRICS):
            await scraper.scrape("new")
        await scraper.aclose()
    assert gauge() == 2**20  # a failed scrape leaves the last reading
