"""The guard loop's judgement, with readings from a stub source and respx-mocked scrapes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import respx

from cutover.request.metrics import Metrics
from cutover.rollout.control import rollout_status
from cutover.rollout.coordination import Coordination
from cutover.rollout.guard import Guard
from cutover.rollout.guard_status import EvaluationFile
from cutover.rollout.machine import Rollout
from cutover.rollout.sources import EmbeddedSource, MemoryScraper, Observation
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


def build(
    tmp_path: Path, readings: list[Observation], router: respx.MockRouter | None = None, **guard
) -> tuple[Guard, Rollout, Metrics, Clock]:
    clock = Clock(5_000.0)
    settings = make_settings(
        rollout={"stages": [10, 50, 100], "hold": 10},
        guard={"min_requests": 50, "failures_to_rollback": 2, **guard},
        state={"path": str(tmp_path / "state.json")},
    )
    rollout = Rollout.restore(
        settings, StateStore(settings.state.path), clock=clock, monotonic=clock
    )
    metrics = Metrics()
    queue = list(readings)

    async def observe(now: float, since: float | None) -> Observation:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    scraper = None
    if router is not None:
        transport = httpx.MockTransport(router.async_handler)
        scraper = MemoryScraper({"new": NEW_METRICS}, metrics, transport=transport)
    guard_ = Guard(settings.guard, rollout, metrics, observe, scraper=scraper, monotonic=clock)
    return guard_, rollout, metrics, clock


HEALTHY = Observation(new_requests=200, new_errors=1, legacy_requests=800, new_p95=0.02,
                      legacy_p95=0.02)  # fmt: skip


async def test_healthy_readings_promote_after_the_hold(tmp_path) -> None:
    guard, rollout, metrics, clock = build(tmp_path, [HEALTHY])
    for _ in range(3):
        verdicts = await guard.tick()
        clock.now += 5
    assert [v.result for v in verdicts] == [CheckResult.PASS, CheckResult.PASS]
    assert rollout.weight == 50
    assert (
        metrics.registry.get_sample_value(
            "cutover_guard_checks_total", {"check": "error_rate", "result": "pass"}
        )
        == 3
    )


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
    verdicts = await guard.tick()
    latency = next(v for v in verdicts if v.check == "latency")
    assert latency.result is CheckResult.FAIL
    assert latency.value == pytest.approx(0.2 / 0.05)  # against 50 ms, not legacy's 1 ms


async def test_low_traffic_is_nodata(tmp_path) -> None:
    low = Observation(new_requests=10, new_errors=10, legacy_requests=90, new_p95=9.0,
                      legacy_p95=0.01)  # fmt: skip
    guard, rollout, metrics, _ = build(tmp_path, [low])
    for _ in range(10):
        verdicts = await guard.tick()
    assert {v.result for v in verdicts} == {CheckResult.NODATA}
    assert rollout.phase == "progressing"
    assert (
        metrics.registry.get_sample_value(
            "cutover_guard_checks_total", {"check": "latency", "result": "nodata"}
        )
        == 10
    )


async def test_source_errors_pause_promotion_without_rolling_back(tmp_path) -> None:
    broken = Observation(errors={r: "prometheus down" for r in ("new_requests", "new_p95")})
    guard, rollout, _, _ = build(tmp_path, [broken])
    for _ in range(10):
        verdicts = await guard.tick()
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
        first = await guard.tick()
        assert rollout.state.baseline_memory_bytes == 100 * 2**20
        assert StateStore(tmp_path / "state.json").load().baseline_memory_bytes == 100 * 2**20
        assert next(v for v in first if v.check == "memory").result is CheckResult.PASS
        second = await guard.tick()
        assert next(v for v in second if v.check == "memory").value == pytest.approx(1.2)
        await guard.tick()
        await guard.tick()
        await guard.scraper.aclose()
    assert rollout.state.failure["check"] == "memory"
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
        verdicts = await guard.tick()
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
    rollout = Rollout.restore(
        settings, StateStore(settings.state.path), clock=wall or clock, monotonic=clock
    )
    metrics = Metrics()
    source = EmbeddedSource(metrics, settings.guard.window)
    guard = Guard(settings.guard, rollout, metrics, source.observe, monotonic=clock)

    def traffic(new_errors: int) -> None:
        for i in range(100):
            metrics.observe("new", "default", "5xx" if i < new_errors else "2xx", 0.01)
            metrics.observe("legacy", "default", "2xx", 0.01)

    return guard, rollout, clock, traffic


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
        verdicts = await guard.tick()
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
    first = await guard.tick()
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
    rollout.store.writer = disk
    disk.full = True
    for _ in range(3):
        await guard.tick()  # never raises: the loop goes on evaluating
    assert (rollout.phase, rollout.weight) == ("progressing", 10)
    assert StateStore(tmp_path / "state.json").load().phase == "progressing"
    assert caplog.text.count("the rollback by guard was not made") == 2
    assert (
        metrics.registry.get_sample_value(
            "cutover_guard_checks_total", {"check": "error_rate", "result": "fail"}
        )
        == 3
    )
    disk.full = False
    await guard.tick()
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)
    assert StateStore(tmp_path / "state.json").load().phase == "rolled_back"


def worker(tmp_path: Path, clock: Clock) -> tuple[Guard, Rollout]:
    """One of several worker processes on one state file (each its own Coordination)."""
    settings = make_settings(
        rollout={"stages": [10, 50, 100], "hold": 600},
        guard={"interval": 5, "min_requests": 50},
        state={"path": str(tmp_path / "state.json")},
    )
    rollout = Rollout.restore(
        settings, StateStore(settings.state.path), clock=clock, monotonic=clock
    )

    async def observe(now: float, since: float | None) -> Observation:
        return HEALTHY

    guard = Guard(
        settings.guard, rollout, Metrics(), observe,
        coordination=Coordination(settings.state.path),
        shared=EvaluationFile(settings.state.path), monotonic=clock,
    )  # fmt: skip
    return guard, rollout


async def test_every_worker_shows_the_leaders_checks_and_hold(tmp_path) -> None:
    clock = Clock(5_000.0)
    leader, leading = worker(tmp_path, clock)
    other, following = worker(tmp_path, clock)
    try:
        for _ in range(4):
            assert await leader.tick() != []
            assert await other.tick() == []  # not the leader: adopts instead of judging
            clock.now += 5
        assert rollout_status(following)["checks"] == rollout_status(leading)["checks"] != {}
        assert rollout_status(leading)["healthy_for"] == 20
        assert rollout_status(following)["healthy_for"] == 20
        clock.now += 2
        await other.follow()  # nothing new written: the same hold, 2 s on
        assert (
            rollout_status(following)["healthy_for"] == rollout_status(leading)["healthy_for"] == 22
        )
    finally:
        leader.coordination.resign()
