"""One migration's judgement: its readings against its own thresholds, its own backends'
names, its own latency baseline and memory baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cutover.config import Settings
from cutover.rollout.judge import Judge
from cutover.rollout.registry import Migrations
from cutover.rollout.sources import Observation, Subject
from cutover.rollout.state import StateStore
from cutover.vocabulary import CheckResult
from tests.clocks import Clock
from tests.conftest import make_settings

ENGINE = {"name": "trade-engine", "match": {"prefix": "/api/v1/backtests/"},
          "from": "simulator", "to": "engine", "rollout": {"stages": [10, 100]}}  # fmt: skip
STRATEGIES = {"name": "strategies", "match": {"prefix": "/api/v1/strategies"},
              "from": "legacy", "to": "new", "rollout": {"stages": [25, 100]}}  # fmt: skip


def judges(
    tmp_path: Path, engine: dict[str, Any] | None = None, **sections: Any
) -> dict[str, Judge]:
    """A judge for trade-engine (simulator → engine) and one for strategies (legacy → new),
    each with its thresholds: the guard section's, overridden by its own."""
    settings: Settings = make_settings(
        backends={"simulator": {"url": "http://simulator.test"},
                  "engine": {"url": "http://engine.test"}},
        migrations=[{**ENGINE, **(engine or {})}, STRATEGIES],
        guard={"min_requests": 50},
        state={"path": str(tmp_path / "state.json")},
        **sections,
    )  # fmt: skip
    clock = Clock()
    store = StateStore(settings.state.path)
    migrations = Migrations.restore(settings, store, clock=clock, monotonic=clock)
    return {
        config.name: Judge(
            config.guard.over(settings.guard),
            migrations.get(config.name),
            source=config.source,
            target=config.target,
            memory=True,
            shadow=settings.shadow if settings.mirrored(config) else None,
        )
        for config in settings.migration_list
    }


def reading(**values: Any) -> Observation:
    base = {"new_requests": 200, "new_errors": 0, "legacy_requests": 200, "new_p95": 0.02,
            "legacy_p95": 0.02, "new_memory": 100.0}  # fmt: skip
    return Observation(**{**base, **values})


def verdict(verdicts: list, check: str):
    return next(v for v in verdicts if v.check == check)


def test_a_judge_reads_its_migration_and_backends(tmp_path: Path) -> None:
    judge = judges(tmp_path)["trade-engine"]
    assert judge.name == "trade-engine"
    rollout = judge.rollout
    assert judge.subject() == Subject(
        "trade-engine", "simulator", "engine", rollout.judging_since_monotonic()
    )
    assert judge.subject().since is not None  # its start: nothing before it is judged


def test_latency_is_to_against_from_named_as_the_migrations_backends(tmp_path: Path) -> None:
    engine = judges(tmp_path)["trade-engine"]
    latency = verdict(engine.judge(reading(new_p95=0.3, legacy_p95=0.1)), "latency")
    assert (latency.result, latency.value) == (CheckResult.FAIL, pytest.approx(3.0))
    assert latency.detail == "p95 engine 300.0 ms vs simulator 100.0 ms"
    quiet = verdict(engine.judge(reading(new_requests=10)), "latency")
    assert (quiet.result, quiet.detail) == (CheckResult.NODATA, "too few requests to engine")


def test_each_migration_keeps_its_own_from_latency_baseline(tmp_path: Path) -> None:
    both = judges(tmp_path)
    engine, strategies = both["trade-engine"], both["strategies"]
    engine.judge(reading(legacy_p95=1.0))  # a slow endpoint, on both backends
    strategies.judge(reading(legacy_p95=0.02))  # a fast one
    # At 100 % `from` has almost no traffic: each compares with its own last p95.
    quiet = {"legacy_requests": 2, "legacy_p95": 5.0}
    slow = verdict(engine.judge(reading(new_p95=1.2, **quiet)), "latency")
    fast = verdict(strategies.judge(reading(new_p95=0.03, **quiet)), "latency")
    assert (slow.result, slow.value) == (CheckResult.PASS, pytest.approx(1.2))
    assert (fast.result, fast.value) == (CheckResult.PASS, pytest.approx(1.5))
    assert engine.rollout.state.last_legacy_p95 == 1.0
    assert strategies.rollout.state.last_legacy_p95 == 0.02


def test_a_migrations_overrides_are_its_thresholds_only(tmp_path: Path) -> None:
    both = judges(tmp_path, engine={"guard": {"max_error_rate": 0.2, "max_latency_ratio": 5}})
    failing = reading(new_errors=20, new_p95=0.08)  # 10 % errors, 4 times from's p95
    engine = both["trade-engine"].judge(failing)
    strategies = both["strategies"].judge(failing)
    assert [(v.result, v.threshold) for v in engine[:2]] == [
        (CheckResult.PASS, 0.2), (CheckResult.PASS, 5)
    ]  # fmt: skip
    assert [(v.result, v.threshold) for v in strategies[:2]] == [
        (CheckResult.FAIL, 0.05), (CheckResult.FAIL, 2.0)
    ]  # fmt: skip
    # min_requests stays the guard section's for both.
    few = reading(new_requests=40, new_errors=40)
    assert verdict(both["trade-engine"].judge(few), "error_rate").result is CheckResult.NODATA


def test_memory_is_judged_against_the_migrations_own_baseline(tmp_path: Path) -> None:
    both = judges(tmp_path)
    both["trade-engine"].rollout.state.baseline_memory_bytes = 100.0
    both["strategies"].rollout.state.baseline_memory_bytes = 50.0
    grown = reading(new_memory=120.0)
    engine = verdict(both["trade-engine"].judge(grown), "memory")
    strategies = verdict(both["strategies"].judge(grown), "memory")
    assert (engine.result, engine.value) == (CheckResult.PASS, pytest.approx(1.2))
    assert (strategies.result, strategies.value) == (CheckResult.FAIL, pytest.approx(2.4))
    unread = Observation(errors={"new_memory": "http://new.test/metrics: 503"})
    failed = verdict(both["strategies"].judge(unread), "memory")
    assert (failed.result, failed.detail) == (CheckResult.ERROR, "http://new.test/metrics: 503")


def test_only_a_mirrored_migration_has_a_shadow_check(tmp_path: Path) -> None:
    both = judges(tmp_path, engine={"shadow": {"sample": 0.5}})
    engine = both["trade-engine"].judge(reading(shadow_comparisons=100, shadow_mismatches=5))
    assert verdict(engine, "shadow").result is CheckResult.FAIL
    strategies = both["strategies"].judge(reading(shadow_comparisons=100, shadow_mismatches=5))
    assert [v.check for v in strategies] == ["error_rate", "latency", "memory"]


def test_a_fault_of_the_last_interval_is_not_diluted_by_the_window(tmp_path: Path) -> None:
    engine = judges(tmp_path)["trade-engine"]
    window = reading(new_requests=1200, new_errors=40)  # 3 % over the window
    window.recent = reading(new_requests=100, new_errors=40)  # 40 % in the last interval
    error_rate = verdict(engine.judge(window), "error_rate")
    assert (error_rate.result, error_rate.value) == (CheckResult.FAIL, pytest.approx(0.4))
    assert error_rate.detail.startswith("last interval: ")
