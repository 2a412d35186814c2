"""The control object: operator actions under the state lock on the latest saved state,
the status document, and readiness."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cutover.rollout.checks import Verdict
from cutover.rollout.control import Control, iso, rollout_status
from cutover.rollout.coordination import Coordination
from cutover.rollout.machine import Rollout
from cutover.rollout.registry import Migrations, UnknownMigration
from cutover.rollout.state import StateStore
from cutover.rollout.transitions import RolloutError
from cutover.vocabulary import CheckResult, Phase
from tests.clocks import Clock
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

PASS = [Verdict("error_rate", CheckResult.PASS, 0.0, 0.05), Verdict("latency", CheckResult.PASS)]


TWO_MIGRATIONS = [
    {"name": "trade-engine", "match": {"prefix": "/api/v1/backtests/"}, "from": "legacy",
     "to": "new", "rollout": {"stages": [10, 50, 100], "hold": 60}},
    {"name": "strategies", "match": {"prefix": "/api/v1/strategies"}, "from": "legacy",
     "to": "new", "rollout": {"stages": [25, 100], "hold": 60}},
]  # fmt: skip


def worker(tmp_path: Path, clock: Clock | None = None, **sections: Any) -> Control:
    """One worker process's control over the migrations saved in ``tmp_path`` (without
    ``sections``, the default migration of a config without migrations)."""
    sections = sections or {"rollout": {"stages": [10, 50, 100], "hold": 60}}
    settings = make_settings(**sections, state={"path": str(tmp_path / "state.json")})
    clock = clock or Clock()
    store = StateStore(settings.state.path)
    migrations = Migrations.restore(settings, store, clock=clock, monotonic=clock)
    return Control(migrations, Coordination(settings.state.path))


def default(control: Control) -> Rollout:
    return control.migrations.get("default")


async def test_each_action_makes_its_transition(tmp_path: Path) -> None:
    control = worker(tmp_path)
    assert (await control.promote("default")).to_weight == 50
    assert (await control.pause("default")).to_phase == Phase.PAUSED
    assert (await control.resume("default")).to_phase == Phase.PROGRESSING
    assert (await control.set_weight("default", 30)).reason == "weight set to 30% by operator"
    assert (await control.rollback("default", "bad numbers")).reason == "bad numbers"
    assert (await control.restart("default")).to_weight == 10
    kinds = [t.kind for t in default(control).state.history]
    assert kinds == ["start", "promote", "pause", "resume", "set_weight", "rollback", "restart"]
    with pytest.raises(RolloutError, match="after a rollback"):
        await control.restart("default")


async def test_an_action_moves_its_migration_only(tmp_path: Path) -> None:
    control = worker(tmp_path, migrations=TWO_MIGRATIONS)
    assert control.names == ["trade-engine", "strategies"]
    strategies = control.migrations.get("strategies")
    before = strategies.state
    await control.rollback("trade-engine", "bad numbers")
    await control.set_weight("trade-engine", 5)
    assert control.migrations.get("trade-engine").weight == 5
    assert strategies.state == before
    assert StateStore(tmp_path / "state.json").load()["strategies"] == before
    assert [s["name"] for s in await control.current_statuses()] == control.names


async def test_an_unknown_migration_is_refused_without_waiting_for_the_lock(
    tmp_path: Path,
) -> None:
    control = worker(tmp_path, migrations=TWO_MIGRATIONS)
    held = Coordination(tmp_path / "state.json").state_lock()  # as another worker holds it
    unknown = pytest.raises(UnknownMigration, match="configured: trade-engine, strategies")
    with held, unknown:
        await asyncio.wait_for(control.pause("default"), 5)
    with pytest.raises(UnknownMigration):
        control.status("default")


async def test_an_action_runs_on_what_another_worker_saved(tmp_path: Path) -> None:
    one, other = worker(tmp_path), worker(tmp_path)
    await one.pause("default")
    assert default(other).phase == Phase.PROGRESSING  # it has not looked yet
    # Its own memory says "progressing": resume would be refused without the sync.
    transition = await other.resume("default")
    assert (transition.from_phase, transition.to_phase) == (Phase.PAUSED, Phase.PROGRESSING)
    assert StateStore(tmp_path / "state.json").load() == {"default": default(other).state}


async def test_an_action_waiting_for_the_state_lock_does_not_block_the_loop(
    tmp_path: Path,
) -> None:
    """Another worker holds the state lock: the action waits for it in a thread while the
    event loop goes on serving."""
    control = worker(tmp_path)
    holding, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        with Coordination(tmp_path / "state.json").state_lock():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert holding.wait(5)
        action = asyncio.ensure_future(control.pause("default"))
        began = time.monotonic()
        for _ in range(10):
            await asyncio.sleep(0.01)  # the loop turns while the action waits
        assert time.monotonic() - began < 1.0
        assert not action.done()
        release.set()
        transition = await asyncio.wait_for(action, 5)
    finally:
        release.set()
        thread.join(5)
    assert transition.kind == "pause" and default(control).phase == "paused"


async def test_the_status_document(tmp_path: Path) -> None:
    clock = Clock()
    control = worker(tmp_path, clock)
    await default(control).evaluate(PASS)
    clock.now += 20
    status = control.status("default")
    assert status == {"name": "default", **rollout_status(default(control))}
    assert status["phase"] == "progressing"
    assert status["stages"] == [
        {"weight": 10, "hold": 60},
        {"weight": 50, "hold": 60},
        {"weight": 100, "hold": 60},
    ]
    assert status["healthy_for"] == 20
    assert status["next_promotion_in"] == 40
    assert status["checks"]["error_rate"] == {
        "result": "pass", "value": 0.0, "threshold": 0.05, "detail": "", "rolls_back": True,
    }  # fmt: skip
    assert status["history"][0]["at"] == "1970-01-12T13:46:40.000Z"


async def test_the_status_shows_the_breaker_of_the_moment(tmp_path: Path) -> None:
    breakers: list[dict[str, Any] | None] = [{"state": "closed"}]
    control = worker(tmp_path)
    control.describe = lambda name: {"to": "new", "breaker": breakers[-1]}
    assert control.status("default")["breaker"] == {"state": "closed"}
    breakers.append(None)  # a reload removed it
    assert control.status("default")["breaker"] is None
    assert control.status("default")["to"] == "new"


async def test_the_current_status_follows_the_guard(tmp_path: Path) -> None:
    followed: list[bool] = []

    class Guard:
        async def follow(self) -> None:
            followed.append(True)

    control = worker(tmp_path)
    await control.current_status("default")
    control.guard = Guard()  # type: ignore[assignment]
    assert (await control.current_status("default"))["phase"] == "progressing"
    assert followed == [True]
    assert [s["phase"] for s in await control.current_statuses()] == ["progressing"]
    assert followed == [True, True]


def test_readiness_is_off_until_the_gateway_says_so(tmp_path: Path) -> None:
    assert worker(tmp_path).ready is False


def test_iso() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1763780100.5) == "2025-11-22T02:55:00.500Z"
