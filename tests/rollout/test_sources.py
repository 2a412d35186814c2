"""Where the guard's readings come from: the proxy's counters read at one instant, the
embedded source's sliding window over them, and each backend's resident memory."""

from __future__ import annotations

import httpx
import pytest
import respx

from cutover.request.metrics import Metrics
from cutover.rollout.sources import (
    BOUNDS,
    EmbeddedSource,
    MemoryScraper,
    ScrapeError,
    difference,
    read_counters,
    resident_memory,
)
from cutover.vocabulary import ShadowResult

pytestmark = pytest.mark.anyio

NEW_METRICS = "http://new.test/metrics"
MEMORY_PAGE = (
    "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
    "# TYPE process_resident_memory_bytes gauge\n"
    "process_resident_memory_bytes 1048576.0\n"
)


def test_the_counters_of_one_instant() -> None:
    metrics = Metrics()
    before = read_counters(metrics)
    assert before.requests == {"legacy": 0, "new": 0}
    assert before.shadow == dict.fromkeys(ShadowResult, 0.0)
    for code in ("2xx", "5xx", "error", "4xx"):
        metrics.observe("new", "default", code, 0.01)
    metrics.observe("legacy", "default", "2xx", 0.3)
    for result in ("match", "match", "mismatch", "dropped"):
        metrics.shadow_requests.labels("default", result).inc()
    after = read_counters(metrics)
    assert (after.requests, after.errors) == ({"legacy": 1, "new": 4}, {"legacy": 0, "new": 2})
    assert after.buckets["new"][-1] == 4 and len(after.buckets["new"]) == len(BOUNDS)
    assert after.shadow == {"match": 2, "mismatch": 1, "error": 0, "dropped": 1}
    seen = difference(after, before)
    assert (seen.new_requests, seen.new_errors, seen.legacy_requests) == (4, 2, 1)
    # Compared: matches and mismatches; errors and dropped mirrors were never compared.
    assert (seen.shadow_comparisons, seen.shadow_mismatches) == (3, 1)
    assert seen.new_p95 is not None and seen.new_p95 <= 0.01
    assert seen.legacy_p95 is not None and 0.25 < seen.legacy_p95 <= 0.5
    assert difference(after, after).new_p95 is None  # nothing in the window


async def test_embedded_window_counts_only_recent_requests() -> None:
    metrics = Metrics()
    source = EmbeddedSource(metrics, window=60)
    for _ in range(100):
        metrics.observe("new", "default", "2xx", 0.01)
    assert (await source.observe(0)).new_requests is None  # the first snapshot is the base
    for _ in range(40):
        metrics.observe("new", "default", "5xx", 0.2)
    for _ in range(60):
        metrics.observe("legacy", "/api/", "2xx", 0.01)
    seen = await source.observe(30)
    assert (seen.new_requests, seen.new_errors, seen.legacy_requests) == (40, 40, 60)
    assert 0.15 < seen.new_p95 <= 0.2
    assert seen.legacy_p95 <= 0.01
    metrics.observe("new", "default", "error", 0.5)
    # The base is the newest snapshot at least a window old: at 61 that is still the one
    # at 0 (the one at 30 is too recent); at 91 it is the one at 30.
    assert (await source.observe(61)).new_requests == 41
    later = await source.observe(91)
    assert (later.new_requests, later.new_errors) == (1, 1)


async def test_embedded_window_starts_again_at_since() -> None:
    metrics = Metrics()
    source = EmbeddedSource(metrics, window=60)
    await source.observe(0)
    for _ in range(40):
        metrics.observe("new", "default", "5xx", 0.2)
    assert (await source.observe(5)).new_errors == 40
    # Since 7 (a restart): the first reading after it is the base, then only what follows.
    assert (await source.observe(10, since=7)).new_requests is None
    for _ in range(10):
        metrics.observe("new", "default", "2xx", 0.01)
    seen = await source.observe(15, since=7)
    assert (seen.new_requests, seen.new_errors) == (10, 0)


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
