from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cutover.config import Settings
from cutover.rollout.registry import Migrations, UnknownMigration
from cutover.rollout.state import SaveError, StateStore
from cutover.vocabulary import Phase, TransitionKind
from tests.clocks import Clock
from tests.conftest import make_settings
from tests.disks import Disk
from tests.migrations import STRATEGIES, TRADE_ENGINE

pytestmark = pytest.mark.anyio

DATA_LAYER = {
    "name": "data-layer",
    "match": {"prefix": "/api/v1/data"},
    "from": "legacy",
    "to": "new",
    "rollout": {"stages": [5, 100], "hold": 60},
}


def settings(tmp_path: Path, *migrations: dict[str, Any]) -> Settings:
    return make_settings(migrations=list(migrations), state={"path": str(tmp_path / "state.json")})


def restore(settings: Settings, clock: Clock, writer: Disk | None = None) -> Migrations:
    path = settings.state.path
    store = StateStore(path) if writer is None else StateStore(path, writer=writer)
    return Migrations.restore(settings, store, clock=clock, monotonic=clock)


def saved(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "state.json").read_text())["migrations"]


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_restore_starts_every_migration_in_one_write(tmp_path, clock) -> None:
    disk = Disk()
    migrations = restore(settings(tmp_path, TRADE_ENGINE, STRATEGIES), clock, disk)
    assert disk.writes == 1
    assert migrations.names == ["trade-engine", "strategies"]
    assert [(r.name, r.phase, r.weight) for r in migrations] == [
        ("trade-engine", "progressing", 10),
        ("strategies", "progressing", 25),
    ]
    file = saved(tmp_path)
    assert list(file) == ["trade-engine", "strategies"]
    for name in file:
        assert [t["kind"] for t in file[name]["history"]] == ["start"]
        assert file[name]["history"][0]["actor"] == "startup"
    assert StateStore(tmp_path / "state.json").load() == {r.name: r.state for r in migrations}


async def test_a_saved_migration_is_kept(tmp_path, clock) -> None:
    first = restore(settings(tmp_path, TRADE_ENGINE), clock)
    await first.get("trade-engine").promote()
    await first.get("trade-engine").pause()
    kept = first.get("trade-engine").state
    disk = Disk()
    clock.now += 3600
    again = restore(settings(tmp_path, TRADE_ENGINE, STRATEGIES), clock, disk)
    engine = again.get("trade-engine")
    assert (engine.phase, engine.weight) == ("paused", 50)
    assert engine.state == kept
    assert (again.get("strategies").phase, again.get("strategies").weight) == ("progressing", 25)
    assert disk.writes == 1  # only the new migration's start
    # A restart over a file where every migration has a state writes nothing.
    restore(settings(tmp_path, TRADE_ENGINE, STRATEGIES), clock, disk)
    assert disk.writes == 1


async def test_a_reload_starts_an_added_migration_and_keeps_the_others(tmp_path, clock) -> None:
    migrations = restore(settings(tmp_path, TRADE_ENGINE, STRATEGIES), clock)
    engine, strategies = migrations.get("trade-engine"), migrations.get("strategies")
    await engine.promote()
    await strategies.pause()
    seen = []
    migrations.listeners.append(lambda name, t, s: seen.append((name, t.kind, s.weight)))
    clock.now += 10
    await migrations.reconfigure(settings(tmp_path, TRADE_ENGINE, STRATEGIES, DATA_LAYER))
    assert migrations.names == ["trade-engine", "strategies", "data-layer"]
    added = migrations.get("data-layer")
    assert (added.phase, added.weight, added.stage()) == ("progressing", 5, 0)
    assert seen == [("data-layer", TransitionKind.START, 5)]
    assert added.state.history[-1].reason == "added by a config reload: starting"
    assert saved(tmp_path)["data-layer"]["history"][-1]["kind"] == "start"
    # The others are the same rollouts, at their phase and weight.
    assert migrations.get("trade-engine") is engine
    assert (engine.phase, engine.weight) == ("progressing", 50)
    assert (strategies.phase, strategies.weight) == ("paused", 25)
    assert saved(tmp_path)["trade-engine"]["weight"] == 50
    # The added one transitions and announces like the others.
    await added.promote()
    assert seen[-1] == ("data-layer", TransitionKind.PROMOTE, 100)


async def test_a_reload_whose_start_cannot_be_saved_changes_nothing(tmp_path, clock) -> None:
    disk = Disk()
    migrations = restore(settings(tmp_path, TRADE_ENGINE, STRATEGIES), clock, disk)
    content = (tmp_path / "state.json").read_bytes()
    disk.full = True
    with pytest.raises(SaveError, match="No space left on device"):
        await migrations.reconfigure(settings(tmp_path, TRADE_ENGINE, DATA_LAYER))
    assert migrations.names == ["trade-engine", "strategies"]
    assert migrations.get("strategies").phase == "progressing"
    assert (tmp_path / "state.json").read_bytes() == content
    disk.full = False
    await migrations.reconfigure(settings(tmp_path, TRADE_ENGINE, DATA_LAYER))
    assert migrations.names == ["trade-engine", "data-layer"]


async def test_a_kept_migration_takes_its_new_stages(tmp_path, clock) -> None:
    migrations = restore(settings(tmp_path, TRADE_ENGINE), clock)
    engine = migrations.get("trade-engine")
    faster = {**TRADE_ENGINE, "rollout": {"stages": [10, 30, 100], "hold": 60}}
    await migrations.reconfigure(settings(tmp_path, faster))
    assert (engine.phase, engine.weight, engine.hold()) == ("progressing", 10, 60)
    await engine.promote()
    assert engine.weight == 30


async def test_a_removed_migration_is_dropped_and_its_history_stays(tmp_path, clock) -> None:
    migrations = restore(settings(tmp_path, TRADE_ENGINE, STRATEGIES), clock)
    await migrations.get("strategies").rollback("bad")
    history = saved(tmp_path)["strategies"]["history"]
    await migrations.reconfigure(settings(tmp_path, TRADE_ENGINE))
    assert migrations.names == ["trade-engine"] and len(migrations) == 1
    with pytest.raises(UnknownMigration):
        migrations.get("strategies")
    assert saved(tmp_path)["strategies"]["history"] == history
    # Saves of the migrations still configured keep it in the file.
    await migrations.get("trade-engine").promote()
    assert saved(tmp_path)["strategies"]["history"] == history
    assert saved(tmp_path)["strategies"]["phase"] == "rolled_back"


async def test_an_unknown_name_is_unknown_migration(tmp_path, clock) -> None:
    migrations = restore(settings(tmp_path, TRADE_ENGINE, STRATEGIES), clock)
    with pytest.raises(UnknownMigration) as caught:
        migrations.get("trade")
    assert caught.value.name == "trade"
    assert str(caught.value) == "no migration named 'trade' (configured: trade-engine, strategies)"


# A version-1 file (from before migrations had names) of a rollout paused at 50 %.
SINGLE_ROLLOUT_FILE = {
    "version": 1,
    "phase": "paused",
    "weight": 50.0,
    "baseline_memory_bytes": 1.0e8,
    "last_legacy_p95": 0.0075,
    "reason": "paused by operator",
    "failure": None,
    "history": [
        {"at": 1763780000.0, "from_phase": None, "to_phase": "progressing", "from_weight": None,
         "to_weight": 10.0, "reason": "no saved state: starting", "actor": "startup",
         "kind": "start", "failure": None},
        {"at": 1763780300.0, "from_phase": "progressing", "to_phase": "progressing",
         "from_weight": 10.0, "to_weight": 50.0, "reason": "every check passed for the "
         "stage's hold", "actor": "guard", "kind": "promote", "failure": None},
        {"at": 1763780400.0, "from_phase": "progressing", "to_phase": "paused",
         "from_weight": 50.0, "to_weight": 50.0, "reason": "paused by operator",
         "actor": "operator", "kind": "pause", "failure": None},
    ],
}  # fmt: skip


async def test_a_version_1_state_is_carried_over_never_reset(tmp_path, clock) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(SINGLE_ROLLOUT_FILE))
    today = make_settings(rollout={"stages": [10, 50, 100], "hold": 300}, state={"path": str(path)})
    disk = Disk()
    migrations = restore(today, clock, disk)
    default = migrations.get("default")
    assert (default.phase, default.weight, default.stage()) == (Phase.PAUSED, 50, 1)
    assert default.state.baseline_memory_bytes == 1.0e8
    assert len(default.state.history) == 3
    assert disk.writes == 0  # nothing to start
    await default.resume()
    file = json.loads(path.read_text())
    assert file["version"] == 2 and list(file["migrations"]) == ["default"]
    history = file["migrations"]["default"]["history"]
    assert history[:3] == SINGLE_ROLLOUT_FILE["history"]
    assert history[3]["kind"] == "resume"
    assert file["migrations"]["default"]["weight"] == 50
