"""cutover_demo.new_backend.driver_migrations: the demo's reading of GET /migrations (which
migration a request is, where the fault goes and when, the progress lines, the end)."""

from __future__ import annotations

import pytest

from cutover_demo.new_backend.driver_migrations import (
    Progress,
    fault_due,
    fault_target,
    fault_weight,
    migration_of,
    settled,
    settled_line,
    transition_line,
)
from tests.demo.migration_docs import doc, transition, two

EXECUTE = "/api/v1/backtests/bt-7/execute"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", EXECUTE, "trade-engine"),
        ("GET", EXECUTE, "none"),  # trade-engine is POST only
        ("GET", "/api/v1/strategies", "strategies"),
        ("GET", "/api/v1/strategies/momentum", "strategies"),
        ("GET", "/api/v1/strategiesx", "none"),  # not on a segment boundary
        ("GET", "/healthz", "none"),
    ],
)
def test_the_migration_a_request_belongs_to(method: str, path: str, expected: str) -> None:
    assert migration_of(method, path, two()) == expected


def test_the_longest_matching_prefix_wins_whatever_the_order() -> None:
    wide, narrow = doc("api", "/api/v1"), doc("trade-engine", "/api/v1/backtests/")
    assert migration_of("POST", EXECUTE, [wide, narrow]) == "trade-engine"
    assert migration_of("POST", EXECUTE, [narrow, wide]) == "trade-engine"
    assert migration_of("GET", "/api/v1/strategies", [narrow, wide]) == "api"


def test_the_single_default_migration_takes_every_request() -> None:
    default = [doc("default", "/")]
    assert migration_of("POST", EXECUTE, default) == "default"
    assert migration_of("GET", "/api/v1/strategies", default) == "default"


def test_the_fault_goes_into_the_first_migration_with_a_rollout() -> None:
    manual = doc("reports", "/api/v1/reports/", phase="manual", stage=None, stages=())
    migrations = [manual, *two()]
    target = fault_target(migrations)
    assert target is not None and target["name"] == "trade-engine"
    assert fault_target([manual]) is None


@pytest.mark.parametrize(
    ("stages", "weight"), [((10, 50, 100), 50), ((25, 100), 100), ((100,), 100)]
)
def test_the_fault_goes_in_at_the_second_stage(stages: tuple[float, ...], weight: float) -> None:
    assert fault_weight(doc("m", "/", stages=stages)) == weight


def test_the_fault_is_due_once_the_target_reaches_its_second_stage() -> None:
    assert not fault_due(doc("m", "/", weight=10))
    assert fault_due(doc("m", "/", weight=50, stage=1))
    assert fault_due(doc("m", "/", weight=100, stage=2))
    # Rolled back (or paused) before it got there: no fault goes in then.
    assert not fault_due(doc("m", "/", weight=0, phase="rolled_back"))
    assert not fault_due(doc("m", "/", weight=50, phase="paused"))


def test_settled_once_every_migration_with_a_rollout_is_promoted_or_rolled_back() -> None:
    engine = doc("trade-engine", "/api/v1/backtests/", phase="rolled_back", weight=0)
    strategies = doc("strategies", "/api/v1/strategies", weight=25, stages=(25, 100))
    manual = doc("reports", "/r", phase="manual", stage=None, stages=())
    assert not settled([engine, strategies, manual])
    strategies.update(phase="promoted", weight=100, stage=1)
    assert settled([engine, strategies, manual])
    assert settled_line([engine, strategies, manual]) == (
        "demo: every migration is settled: trade-engine rolled_back, strategies promoted"
    )
    assert not settled([manual])  # nothing would ever settle: the demo runs on


def test_a_line_per_migration_then_only_for_what_changed() -> None:
    progress = Progress()
    for _ in range(3):
        progress.served("trade-engine", "legacy")
    progress.served("trade-engine", "new")
    progress.served("strategies", "failed")
    assert progress.lines(0.2, two()) == [
        "t=   0s  trade-engine   progressing weight= 10.0%  stage 1/3  "
        "legacy=   3 new=   1 failed=  0  error_rate=pass",
        "t=   0s  strategies     progressing weight= 25.0%  stage 1/2  "
        "legacy=   0 new=   0 failed=  1  error_rate=pass",
    ]
    assert progress.lines(1.2, two()) == []  # nothing moved

    moved = two()
    moved[0].update(weight=50.0, stage=1, history=[transition(50.0)])
    progress.served("trade-engine", "new")
    assert progress.lines(2.2, moved) == [
        "  >>> trade-engine: progressing 10% -> progressing 50%: every check passed (guard)",
        "t=   2s  trade-engine   progressing weight= 50.0%  stage 2/3  "
        "legacy=   0 new=   1 failed=  0  error_rate=pass",  # counted since its last line
    ]


def test_a_moving_migration_is_shown_again_after_a_while_a_settled_one_is_not() -> None:
    progress = Progress()
    migrations = two()
    migrations[1].update(phase="promoted", weight=100, stage=1)
    assert len(progress.lines(0.0, migrations)) == 2
    assert progress.lines(Progress.REFRESH - 0.5, migrations) == []
    again = progress.lines(Progress.REFRESH + 0.5, migrations)
    assert len(again) == 1 and "  trade-engine  " in again[0], again


def test_each_transition_is_shown_once_and_startup_ones_never() -> None:
    progress = Progress()
    migrations = [doc("default", "/", history=[transition(10.0, actor="startup")])]
    assert not any(">>>" in line for line in progress.lines(0.0, migrations))
    rollback = transition(0.0, to_phase="rolled_back")
    migrations[0].update(
        phase="rolled_back", weight=0.0, history=[*migrations[0]["history"], rollback]
    )
    lines = progress.lines(1.0, migrations)
    assert lines[0] == transition_line("default", rollback)
    assert progress.lines(2.0, migrations) == []


def test_a_migration_without_rollout_or_checks() -> None:
    manual = doc("reports", "/r", phase="manual", weight=30, stage=None, stages=(), checks={})
    [line] = Progress().lines(0.0, [manual])
    assert line == (
        "t=   0s  reports        manual      weight= 30.0%  manual     "
        "legacy=   0 new=   0 failed=  0"
    )
