"""The guard loop's judgement, with readings from a stub source and respx-mocked scrapes."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from cutover.config import Settings
from cutover.ops.guard_runner import build_judges
from cutover.request.metrics import Metrics
from cutover.rollout.control import rollout_status
from cutover.rollout.coordination import Coordination
from cutover.rollout.guard import Guard, Observe
from cutover.rollout.guard_status import EvaluationFile
from cutover.rollout.machine import Rollout
from cutover.rollout.registry import Migrations
from cutover.rollout.sources import (
    EmbeddedSource,
    MemoryScraper,
    Observation,
    Subject,
    p95,
    read_counters,
)
from cutover.rollout.state import StateStore
from cutover.vocabulary import CheckResult
from tests.clocks import Clock
from tests.conftest import make_settings
from tests.disks import Disk

pytestmark = pytest.mark.anyio

NEW_METRICS = "http://new.test/metrics"


def memory_page(megabytes: float) -> str:
    return (
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        f"process_resident_memory_bytes {megabytes * 2**20}\n"
    )


def checks(metrics: Metrics, check: str, result: str, migration: str = "default") -> float | None:
    labels = {"migration": migration, "check": check, "result": result}
    return metrics.registry.get_sample_value("cutover_guard_checks_total", labels)


def guard_over(
    settings: Settings,
    observe: Observe,
    clock: Clock,
    *,
    wall: Clock | None = None,
    metrics: Metrics | None = None,
    scraper: MemoryScraper | None = None,
    **options: Any,
) -> tuple[Guard, Migrations]:
    """The guard of ``settings``' migrations, restored from their state file, each judged
    as the gateway judges it (``build_judges``)."""
    store = StateStore(settings.state.path)
    migrations = Migrations.restore(settings, store, clock=wall or clock, monotonic=clock)
    guard = Guard(
        settings.guard, migrations, build_judges(settings, migrations), metrics or Metrics(),
        observe, scraper=scraper, monotonic=clock, **options,
    )  # fmt: skip
    return guard, migrations


def build(
    tmp_path: Path, readings: list[Observation], router: respx.MockRouter | None = None, **guard
) -> tuple[Guard, Rollout, Metrics, Clock]:
    """The default migration's guard over ``readings`` (one per evaluation, the last one
    repeated); with ``router``, new's memory is scraped through it."""
    clock = Clock(5_000.0)
    new: dict[str, Any] = {} if router is None else {"metrics_url": NEW_METRICS}
    settings = make_settings(
        backends={"new": new},
        rollout={"stages": [10, 50, 100], "hold": 10},
        guard={"min_requests": 50, "failures_to_rollback": 2, **guard},
        state={"path": str(tmp_path / "state.json")},
    )
    metrics = Metrics()
    queue = list(readings)

    async def observe(now: float, subjects: Sequence[Subject]) -> dict[str, Observation]:
        assert [s.name for s in subjects] == ["default"]
        reading = queue.pop(0) if len(queue) > 1 else queue[0]
        return {"default": copy.deepcopy(reading)}

    scraper = None
    if router is not None:
        transport = httpx.MockTransport(router.async_handler)
        scraper = MemoryScraper({"new": NEW_METRICS}, metrics, transport=transport)
    guard_, migrations = guard_over(settings, observe, clock, metrics=metrics, scraper=scraper)
    return guard_, migrations.get("default"), metrics, clock


async def tick(guard: Guard) -> list:
    """One evaluation; the default migration's verdicts."""
    return (await guard.tick())["default"]


HEALTHY = Observation(new_requests=200, new_errors=1, legacy_requests=800, new_p95=0.02,
                      legacy_p95=0.02)  # fmt: skip
BAD = Observation(new_requests=100, new_errors=30, legacy_requests=900, new_p95=0.02,
                  legacy_p95=0.02)  # fmt: skip
TRADE_ENGINE = {"name": "trade-engine", "match": {"prefix": "/api/v1/backtests/"},
                "from": "legacy", "to": "new"}  # fmt: skip
STRATEGIES = {"name": "strategies", "match": {"prefix": "/api/v1/strategies"},
              "from": "legacy", "to": "new"}  # fmt: skip


async def test_healthy_readings_promote_after_the_hold(tmp_path) -> None:
    guard, rollout, metrics, clock = build(tmp_path, [HEALTHY])
    for _ in range(3):
        verdicts = await tick(guard)
        clock.now += 5
    assert [v.result for v in verdicts] == [CheckResult.PASS, CheckResult.PASS]
    assert rollout.weight == 50
    assert checks(metrics, "error_rate", "pass") == 3


async def test_error_rate_rolls_back_after_two_evaluations(tmp_path) -> None:
    bad = Observation(new_requests=100, new_errors=30, legacy_requests=900, new_p95=0.02,
                      legacy_p95=0.02)  # fmt: skip
    guard, rollout, _metrics, _ = build(tmp_path, [bad])
    await guard.tick()
    assert rollout.phase == "progressing"
    await guard.tick()
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)
    assert rollout.state.failure["check"] == "error_rate"
    assert rollout.state.failure["value"] == pytest.approx(0.3)


async def test_latency_uses_the_last_legacy_p95_when_legacy_is_quiet(tmp_path) -> None:
    busy = Observation(new_requests=200, new_errors=0, legacy_requests=800, new_p95=0.02,
                       legacy_p95=0.05)  # fmt: skip
    quiet = Observation(new_requests=1000, new_errors=0, legacy_requests=3, new_p95=0.2,
                        legacy_p95=0.001)  # fmt: skip
    guard, _rollout, _, _ = build(tmp_path, [busy, quiet, quiet])
    await guard.tick()
    verdicts = await tick(guard)
    latency = next(v for v in verdicts if v.check == "latency")
    assert latency.result is CheckResult.FAIL
    assert latency.value == pytest.approx(0.2 / 0.05)  # against 50 ms, not legacy's 1 ms


async def test_low_traffic_is_nodata(tmp_path) -> None:
    low = Observation(new_requests=10, new_errors=10, legacy_requests=90, new_p95=9.0,
                      legacy_p95=0.01)  # fmt: skip
    guard, rollout, metrics, _ = build(tmp_path, [low])
    for _ in range(10):
        verdicts = await tick(guard)
    assert {v.result for v in verdicts} == {CheckResult.NODATA}
    assert rollout.phase == "progressing"
    assert checks(metrics, "latency", "nodata") == 10


async def test_source_errors_pause_promotion_without_rolling_back(tmp_path) -> None:
    broken = Observation(errors={r: "prometheus down" for r in ("new_requests", "new_p95")})
    guard, rollout, _, _ = build(tmp_path, [broken])
    for _ in range(10):
        verdicts = await tick(guard)
    assert [v.result for v in verdicts] == [CheckResult.ERROR, CheckResult.ERROR]
    assert rollout.phase == "progressing"


async def test_source_errors_roll_back_when_configured(tmp_path) -> None:
    broken = Observation(errors={"new_requests": "prometheus down"})
    guard, rollout, _, _ = build(tmp_path, [broken], rollback_on_source_error=True)
    await guard.tick()
    await guard.tick()
    assert rollout.phase == "rolled_back"


async def test_memory_baseline_and_growth(tmp_path) -> None:
    with respx.MockRouter(assert_all_mocked=True) as router:
        route = router.get(NEW_METRICS)
        route.side_effect = [
            httpx.Response(200, text=memory_page(mb)) for mb in (100, 120, 160, 170)
        ]
        guard, rollout, metrics, _ = build(tmp_path, [HEALTHY], router)
        first = await tick(guard)
        assert rollout.state.baseline_memory_bytes == 100 * 2**20
        saved = StateStore(tmp_path / "state.json").load()
        assert saved["default"].baseline_memory_bytes == 100 * 2**20
        assert next(v for v in first if v.check == "memory").result is CheckResult.PASS
        second = await tick(guard)
        assert next(v for v in second if v.check == "memory").value == pytest.approx(1.2)
        await guard.tick()
        await guard.tick()
        await guard.scraper.aclose()
    assert rollout.state.failure["check"] == "memory"
    baseline = {"migration": "default", "backend": "new"}
    assert metrics.registry.get_sample_value("cutover_guard_baseline_memory_bytes", baseline) == (
        100 * 2**20
    )
    assert (
        metrics.registry.get_sample_value(
            "cutover_backend_resident_memory_bytes", {"backend": "new"}
        )
        == 170 * 2**20
    )


@pytest.mark.parametrize(
    "response",
    [httpx.Response(503), httpx.Response(200, text="no memory here 1\n"), httpx.ConnectError("x")],
)
async def test_scrape_failures_are_errors(tmp_path, response) -> None:
    with respx.MockRouter(assert_all_mocked=True) as router:
        route = router.get(NEW_METRICS)
        if isinstance(response, Exception):
            route.side_effect = response
        else:
            route.return_value = response
        guard, _rollout, _, _ = build(tmp_path, [HEALTHY], router)
        verdicts = await tick(guard)
        await guard.scraper.aclose()
    memory = next(v for v in verdicts if v.check == "memory")
    assert memory.result is CheckResult.ERROR
    assert NEW_METRICS in memory.detail


def embedded_guard(
    tmp_path: Path, wall: Clock | None = None
) -> tuple[Guard, Rollout, Clock, Callable[[int], None]]:
    """A guard over the embedded source (interval 5 s, window 60 s), and ``traffic(n)``:
    100 requests to each backend, ``n`` of new's failing. The clock returned is the
    monotonic one; the wall clock is the same unless ``wall`` is given."""
    clock = Clock(5_000.0)
    settings = make_settings(
        rollout={"stages": [10, 100], "hold": 600},
        guard={"interval": 5, "window": 60, "min_requests": 50, "failures_to_rollback": 2},
        state={"path": str(tmp_path / "state.json")},
    )
    metrics = Metrics()
    source = EmbeddedSource(metrics, settings.guard.window)
    guard, migrations = guard_over(settings, source.observe, clock, wall=wall, metrics=metrics)

    def traffic(new_errors: int) -> None:
        for i in range(100):
            code = "5xx" if i < new_errors else "2xx"
            metrics.observe("default", "new", "default", code, 0.01)
            metrics.observe("default", "legacy", "default", "2xx", 0.01)

    return guard, migrations.get("default"), clock, traffic


async def test_a_restart_soon_after_a_rollback_is_not_judged_on_the_old_fault(tmp_path) -> None:
    guard, rollout, clock, traffic = embedded_guard(tmp_path)
    await guard.tick()
    while rollout.phase != "rolled_back":
        clock.now += 5
        traffic(30)
        await guard.tick()
    clock.now += 10
    await rollout.restart()  # the fix is deployed, 10 s after the rollback
    for _ in range(6):  # 30 s of healthy traffic: the old errors are still in a 60 s window
        clock.now += 5
        traffic(0)
        verdicts = await tick(guard)
    assert rollout.phase == "progressing", rollout.state.reason
    assert next(v for v in verdicts if v.check == "error_rate").result is CheckResult.PASS


async def test_a_sudden_failure_is_caught_in_the_last_interval(tmp_path) -> None:
    """A minute of healthy traffic must not dilute a fault that began a moment ago."""
    guard, rollout, clock, traffic = embedded_guard(tmp_path)
    for _ in range(12):  # a minute of healthy traffic
        traffic(0)
        await guard.tick()
        clock.now += 5
    traffic(40)  # the fault: 40 % errors in the last interval, ~3 % over the minute
    first = await tick(guard)
    error_rate = next(v for v in first if v.check == "error_rate")
    assert error_rate.result is CheckResult.FAIL
    assert error_rate.value == pytest.approx(0.4)
    assert error_rate.detail.startswith("last interval")
    clock.now += 5
    traffic(40)
    await guard.tick()
    assert rollout.phase == "rolled_back"
    assert rollout.state.failure["check"] == "error_rate"


async def test_a_failure_is_confirmed_after_half_an_interval(tmp_path, monkeypatch) -> None:
    bad = Observation(new_requests=100, new_errors=30, legacy_requests=900, new_p95=0.02,
                      legacy_p95=0.02)  # fmt: skip
    guard, rollout, _, _ = build(tmp_path, [HEALTHY, bad, HEALTHY], interval=4, window=8)
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(round(seconds, 1))
        if len(pauses) == 3:
            raise asyncio.CancelledError

    monkeypatch.setattr("cutover.rollout.guard.asyncio.sleep", sleep)
    with pytest.raises(asyncio.CancelledError):
        await guard.run()
    assert pauses == [4.0, 2.0, 4.0]  # healthy, failed (confirm soon), healthy again
    assert rollout.phase == "progressing"


@pytest.mark.parametrize("jump", [-3600, 3600])
async def test_a_wall_clock_jump_does_not_blind_the_guard(tmp_path, jump) -> None:
    """The wall clock steps an hour (NTP, a VM resumed): windows are monotonic, so a
    failing new is still rolled back two evaluations later."""
    wall = Clock(5_000.0)
    guard, rollout, clock, traffic = embedded_guard(tmp_path, wall)
    for _ in range(3):
        traffic(0)
        await guard.tick()
        clock.now += 5
        wall.now += 5
    wall.now += jump
    for _ in range(2):
        traffic(40)
        await guard.tick()
        clock.now += 5
        wall.now += 5
    assert rollout.phase == "rolled_back", [v.as_dict() for v in rollout.latest.values()]
    assert rollout.state.history[-1].at == wall.now - 5  # stamped with the wall clock


async def test_the_guard_carries_on_while_the_state_cannot_be_saved(tmp_path, caplog) -> None:
    bad = Observation(new_requests=100, new_errors=30, legacy_requests=900, new_p95=0.02,
                      legacy_p95=0.02)  # fmt: skip
    guard, rollout, metrics, _ = build(tmp_path, [bad])
    disk = Disk()
    rollout.book.store.writer = disk
    disk.full = True
    for _ in range(3):
        await guard.tick()  # never raises: the loop goes on evaluating
    assert (rollout.phase, rollout.weight) == ("progressing", 10)
    assert StateStore(tmp_path / "state.json").load()["default"].phase == "progressing"
    assert caplog.text.count("the rollback by guard was not made") == 2
    assert checks(metrics, "error_rate", "fail") == 3
    disk.full = False
    await guard.tick()
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)
    assert StateStore(tmp_path / "state.json").load()["default"].phase == "rolled_back"


def worker(tmp_path: Path, clock: Clock) -> tuple[Guard, Migrations]:
    """One of several worker processes on one state file (each its own Coordination)."""
    settings = make_settings(
        migrations=[
            {**TRADE_ENGINE, "rollout": {"stages": [10, 50, 100], "hold": 600}},
            {**STRATEGIES, "rollout": {"stages": [25, 100], "hold": 600}},
        ],
        guard={"interval": 5, "min_requests": 50},
        state={"path": str(tmp_path / "state.json")},
    )

    async def observe(now: float, subjects: Sequence[Subject]) -> dict[str, Observation]:
        # strategies' new fails once, then recovers: its run of failures is shown too
        failing = clock.now == 5_000.0
        return {
            s.name: copy.deepcopy(BAD if failing and s.name == "strategies" else HEALTHY)
            for s in subjects
        }

    return guard_over(
        settings, observe, clock,
        coordination=Coordination(settings.state.path), shared=EvaluationFile(settings.state.path),
    )  # fmt: skip


async def test_every_worker_shows_the_leaders_checks_and_hold(tmp_path) -> None:
    clock = Clock(5_000.0)
    leader, leading = worker(tmp_path, clock)
    other, following = worker(tmp_path, clock)
    try:
        assert list(await leader.tick()) == ["trade-engine", "strategies"]
        assert await other.tick() == {}  # not the leader: adopts instead of judging
        assert following.get("strategies").consecutive_failures == 1
        assert following.get("trade-engine").consecutive_failures == 0
        clock.now += 5
        for _ in range(4):
            assert list(await leader.tick()) == ["trade-engine", "strategies"]
            assert await other.tick() == {}
            clock.now += 5
        for name in ("trade-engine", "strategies"):
            theirs, ours = rollout_status(leading.get(name)), rollout_status(following.get(name))
            assert ours["checks"] == theirs["checks"] != {}
        engine = [
            rollout_status(m.get("trade-engine"))["healthy_for"] for m in (leading, following)
        ]
        strategies = [
            rollout_status(m.get("strategies"))["healthy_for"] for m in (leading, following)
        ]
        assert engine == [25, 25] and strategies == [20, 20]
        clock.now += 2
        await other.follow()  # nothing new written: the same hold, 2 s on
        assert rollout_status(following.get("trade-engine"))["healthy_for"] == 27
        assert rollout_status(following.get("strategies"))["healthy_for"] == 22
    finally:
        assert leader.coordination is not None
        leader.coordination.resign()


# -- per migration: each judged on its own requests, each rolled back alone ---------------


def two_migrations(
    tmp_path: Path,
    engine: dict[str, Any] | None = None,
    strategies: dict[str, Any] | None = None,
    **sections: Any,
) -> tuple[Guard, Migrations, Metrics, Clock]:
    """trade-engine and strategies, legacy → new, over the embedded source (interval 5 s,
    window 60 s, 50 requests at least, 2 failures to roll back); ``engine`` and
    ``strategies``: more of each migration's config."""
    clock = Clock(5_000.0)
    settings = make_settings(
        migrations=[
            {**TRADE_ENGINE, "rollout": {"stages": [10, 100], "hold": 20}, **(engine or {})},
            {**STRATEGIES, "rollout": {"stages": [25, 100], "hold": 20}, **(strategies or {})},
        ],
        guard={"interval": 5, "window": 60, "min_requests": 50, "failures_to_rollback": 2},
        state={"path": str(tmp_path / "state.json")},
        **sections,
    )
    metrics = Metrics()
    source = EmbeddedSource(metrics, settings.guard.window)
    guard, migrations = guard_over(settings, source.observe, clock, metrics=metrics)
    return guard, migrations, metrics, clock


def requests(
    metrics: Metrics, migration: str, backend: str, n: int, *, failing: int = 0, seconds=0.02
) -> None:
    for i in range(n):
        code = "5xx" if i < failing else "2xx"
        metrics.observe(migration, backend, "default", code, seconds)


def healthy(metrics: Metrics, migration: str) -> None:
    requests(metrics, migration, "new", 100)
    requests(metrics, migration, "legacy", 100)


def verdict(results: dict[str, list], migration: str, check: str):
    return next(v for v in results[migration] if v.check == check)


async def test_a_fault_rolls_back_its_migration_alone(tmp_path) -> None:
    guard, migrations, metrics, clock = two_migrations(tmp_path)
    engine, strategies = migrations.get("trade-engine"), migrations.get("strategies")
    await guard.tick()  # the window's base
    results = {}
    for _ in range(2):  # the fault: 40 % of trade-engine's requests to new fail
        clock.now += 5
        requests(metrics, "trade-engine", "new", 100, failing=40)
        requests(metrics, "trade-engine", "legacy", 100)
        healthy(metrics, "strategies")
        results = await guard.tick()
        assert verdict(results, "strategies", "error_rate").result is CheckResult.PASS
    assert (engine.phase, engine.weight) == ("rolled_back", 0)  # within 2 evaluations
    assert engine.state.failure is not None and engine.state.failure["check"] == "error_rate"
    assert engine.state.reason == "error_rate 0.4 > 0.05"
    assert verdict(results, "trade-engine", "error_rate").value == pytest.approx(0.4)
    assert (strategies.phase, strategies.weight) == ("progressing", 25)
    assert strategies.consecutive_failures == 0
    assert checks(metrics, "error_rate", "fail", "trade-engine") == 2
    assert checks(metrics, "error_rate", "pass", "strategies") == 2
    # strategies goes on: promoted after its hold (20 s of passing checks).
    while strategies.phase == "progressing" and clock.now < 5_100:
        clock.now += 5
        requests(metrics, "trade-engine", "new", 100, failing=40)
        healthy(metrics, "strategies")
        await guard.tick()
    assert (strategies.phase, strategies.weight) == ("promoted", 100)
    assert clock.now == 5_025  # passing since 5 005, its first evaluation with data
    assert (engine.phase, engine.weight) == ("rolled_back", 0)
    file = StateStore(tmp_path / "state.json").load()
    assert file is not None
    assert (file["trade-engine"].phase, file["strategies"].phase) == ("rolled_back", "promoted")
    assert checks(metrics, "error_rate", "fail", "strategies") is None


async def test_latency_compares_the_p95_of_to_and_from_of_the_same_migration(tmp_path) -> None:
    """The issue's "latency 2.13 > 2": new carried mostly trade-engine's slow endpoint and
    legacy mostly strategies' fast one. Per migration, each endpoint meets only itself."""
    guard, migrations, metrics, clock = two_migrations(tmp_path)
    await guard.tick()
    results = {}
    for _ in range(3):
        clock.now += 5
        requests(metrics, "trade-engine", "new", 100, seconds=1.9)
        requests(metrics, "trade-engine", "legacy", 50, seconds=1.8)
        requests(metrics, "strategies", "new", 60, seconds=0.02)
        requests(metrics, "strategies", "legacy", 2000, seconds=0.02)
        results = await guard.tick()
    # Backend against backend, across migrations, new's p95 would be many times legacy's.
    counters = read_counters(metrics)
    whole = {
        backend: p95([sum(c) for c in zip(*(v for k, v in counters.buckets.items()
                                               if k[1] == backend), strict=True)])
        for backend in ("new", "legacy")
    }  # fmt: skip
    assert whole["new"] / whole["legacy"] > 10
    for name in ("trade-engine", "strategies"):
        latency = verdict(results, name, "latency")
        assert latency.result is CheckResult.PASS, latency.detail
        assert latency.value == pytest.approx(1.0)
        assert migrations.get(name).phase == "progressing"
    assert "p95 new 1" in verdict(results, "trade-engine", "latency").detail


async def test_a_slow_to_fails_the_latency_of_its_migration_only(tmp_path) -> None:
    guard, migrations, metrics, clock = two_migrations(tmp_path)
    await guard.tick()
    results = {}
    for _ in range(2):
        clock.now += 5
        requests(metrics, "trade-engine", "new", 100, seconds=0.4)  # 20 times legacy's
        requests(metrics, "trade-engine", "legacy", 100, seconds=0.02)
        requests(metrics, "strategies", "new", 100, seconds=0.02)
        requests(metrics, "strategies", "legacy", 100, seconds=0.02)
        results = await guard.tick()
    assert migrations.get("trade-engine").phase == "rolled_back"
    assert migrations.get("trade-engine").state.failure["check"] == "latency"
    assert verdict(results, "strategies", "latency").result is CheckResult.PASS
    assert migrations.get("strategies").phase == "progressing"


async def test_a_migrations_guard_overrides_apply_to_it_only(tmp_path) -> None:
    guard, migrations, metrics, clock = two_migrations(
        tmp_path, engine={"guard": {"max_error_rate": 0.5, "failures_to_rollback": 3}}
    )
    await guard.tick()
    phases = []
    for _ in range(3):
        clock.now += 5
        for name in ("trade-engine", "strategies"):
            requests(metrics, name, "new", 100, failing=20)
            requests(metrics, name, "legacy", 100)
        results = await guard.tick()
        engine_rate = verdict(results, "trade-engine", "error_rate")
        assert (engine_rate.result, engine_rate.threshold) == (CheckResult.PASS, 0.5)
        phases.append(migrations.get("strategies").phase)
    assert phases == ["progressing", "rolled_back", "rolled_back"]
    assert migrations.get("strategies").state.reason == "error_rate 0.2 > 0.05"
    assert migrations.get("trade-engine").phase == "progressing"
    # trade-engine's own run of 3 failures: 60 % errors fail it twice, and it holds on.
    for _ in range(2):
        clock.now += 5
        requests(metrics, "trade-engine", "new", 100, failing=60)
        await guard.tick()
    assert migrations.get("trade-engine").consecutive_failures == 2
    assert migrations.get("trade-engine").phase == "progressing"
    clock.now += 5
    requests(metrics, "trade-engine", "new", 100, failing=60)
    await guard.tick()
    assert migrations.get("trade-engine").phase == "rolled_back"


V3_METRICS = "http://v3.test/metrics"


async def test_when_the_backend_two_migrations_move_to_grows_each_rolls_back(tmp_path) -> None:
    """trade-engine and strategies move to new, whose memory doubles; data-layer moves to v3,
    whose memory holds."""
    clock = Clock(5_000.0)
    settings = make_settings(
        backends={"new": {"metrics_url": NEW_METRICS},
                  "v3": {"url": "http://v3.test", "metrics_url": V3_METRICS}},
        migrations=[
            {**TRADE_ENGINE, "rollout": {"stages": [10, 100], "hold": 600}},
            {**STRATEGIES, "rollout": {"stages": [25, 100], "hold": 600}},
            {"name": "data-layer", "match": {"prefix": "/api/v1/data"}, "from": "legacy",
             "to": "v3", "rollout": {"stages": [5, 100], "hold": 600}},
        ],
        guard={"interval": 5, "min_requests": 50, "failures_to_rollback": 2},
        state={"path": str(tmp_path / "state.json")},
    )  # fmt: skip
    metrics = Metrics()

    async def observe(now: float, subjects: Sequence[Subject]) -> dict[str, Observation]:
        return {s.name: copy.deepcopy(HEALTHY) for s in subjects}

    with respx.MockRouter(assert_all_mocked=True) as router:
        router.get(NEW_METRICS).side_effect = [
            httpx.Response(200, text=memory_page(mb)) for mb in (100, 200, 200)
        ]
        router.get(V3_METRICS).return_value = httpx.Response(200, text=memory_page(300))
        transport = httpx.MockTransport(router.async_handler)
        urls = {"new": NEW_METRICS, "v3": V3_METRICS}
        scraper = MemoryScraper(urls, metrics, transport=transport)
        guard, migrations = guard_over(settings, observe, clock, metrics=metrics, scraper=scraper)
        for _ in range(3):
            results = await guard.tick()
            clock.now += 5
        await scraper.aclose()
    for name in ("trade-engine", "strategies"):
        rollout = migrations.get(name)
        assert (rollout.phase, rollout.weight) == ("rolled_back", 0), name
        assert rollout.state.failure is not None and rollout.state.failure["check"] == "memory"
        assert rollout.state.reason == "memory 2 > 1.5"
        assert rollout.state.baseline_memory_bytes == 100 * 2**20
    data_layer = migrations.get("data-layer")
    assert data_layer.phase == "progressing"
    assert data_layer.state.baseline_memory_bytes == 300 * 2**20
    assert verdict(results, "data-layer", "memory").result is CheckResult.PASS
    labels = {"migration": "data-layer", "backend": "v3"}
    baseline = metrics.registry.get_sample_value("cutover_guard_baseline_memory_bytes", labels)
    assert baseline == 300 * 2**20
