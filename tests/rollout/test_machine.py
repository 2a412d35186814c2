from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from cutover.rollout.checks import Verdict
from cutover.rollout.control import rollout_status
from cutover.rollout.machine import Rollout
from cutover.rollout.registry import Migrations
from cutover.rollout.state import SaveError, StateStore, Writer, write_atomically
from cutover.rollout.transitions import RolloutError
from cutover.vocabulary import CheckResult
from tests.clocks import Clock
from tests.conftest import make_settings
from tests.disks import Disk

pytestmark = pytest.mark.anyio


def verdicts(*results: CheckResult) -> list[Verdict]:
    names = ("error_rate", "latency", "memory")
    return [Verdict(name, result, 0.5, 0.05) for name, result in zip(names, results, strict=False)]


PASS = verdicts(CheckResult.PASS, CheckResult.PASS)
FAIL = verdicts(CheckResult.FAIL, CheckResult.PASS)
NODATA = verdicts(CheckResult.NODATA, CheckResult.PASS)
ERROR = verdicts(CheckResult.ERROR, CheckResult.PASS)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(
    tmp_path: Path,
    clock: Clock,
    *,
    monotonic: Clock | None = None,
    writer: Writer = write_atomically,
    **sections,
) -> Rollout:
    """A rollout whose wall clock is ``clock`` and monotonic clock ``monotonic`` (the same
    clock unless given), saving through ``writer``."""
    sections.setdefault("rollout", {"stages": [10, 50, 100], "hold": 60})
    sections.setdefault("state", {"path": str(tmp_path / "state.json")})
    settings = make_settings(**sections)
    store = StateStore(settings.state.path, writer=writer)
    migrations = Migrations.restore(settings, store, clock=clock, monotonic=monotonic or clock)
    return migrations.get("default")


def reload(tmp_path: Path, clock: Clock, **sections) -> Rollout:
    return make(tmp_path, clock, **sections)


async def hold_passes(rollout: Rollout, clock: Clock, seconds: float, step: float = 5) -> list:
    transitions = []
    end = clock.now + seconds
    while clock.now <= end:
        if (t := await rollout.evaluate(PASS)) is not None:
            transitions.append(t)
        clock.now += step
    return transitions


async def test_fresh_start_is_progressing_at_the_first_stage(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock, split={"weight": 0})
    assert (rollout.phase, rollout.weight, rollout.stage()) == ("progressing", 10, 0)
    assert rollout.state.history[0].actor == "startup"
    assert StateStore(tmp_path / "state.json").load() == {"default": rollout.state}


async def test_without_stages_the_weight_is_manual(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock, rollout=None, split={"weight": 25})
    assert (rollout.phase, rollout.weight) == ("manual", 25)
    await hold_passes(rollout, clock, 3600)
    assert rollout.weight == 25
    for _ in range(2):
        await rollout.evaluate(FAIL)
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)


async def test_passing_for_the_hold_promotes_stage_by_stage(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    first = await hold_passes(rollout, clock, 59)
    assert first == [] and rollout.weight == 10
    clock.now += 1
    await rollout.evaluate(PASS)
    assert rollout.weight == 50 and rollout.phase == "progressing"
    await hold_passes(rollout, clock, 61)
    assert (rollout.phase, rollout.weight) == ("promoted", 100)
    assert [t.kind for t in rollout.state.history] == ["start", "promote", "promote"]


async def test_per_stage_hold(tmp_path, clock) -> None:
    rollout = make(
        tmp_path, clock, rollout={"stages": [{"weight": 10, "hold": 10}, 100], "hold": 600}
    )
    await hold_passes(rollout, clock, 10)
    assert rollout.weight == 100


@pytest.mark.parametrize("interruption", [NODATA, ERROR, FAIL])
async def test_anything_but_pass_restarts_the_hold(tmp_path, clock, interruption) -> None:
    rollout = make(tmp_path, clock)
    await hold_passes(rollout, clock, 50)
    await rollout.evaluate(interruption)
    await hold_passes(rollout, clock, 50)
    assert rollout.weight == 10  # 50 s + 50 s, but never 60 s in a row


async def test_no_data_never_promotes_and_never_rolls_back(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    for _ in range(100):
        await rollout.evaluate(NODATA)
        clock.now += 60
    assert (rollout.phase, rollout.weight) == ("progressing", 10)


async def test_consecutive_failures_roll_back(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    assert await rollout.evaluate(FAIL) is None
    transition = await rollout.evaluate(FAIL)
    assert transition is not None and transition.kind == "rollback"
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)
    assert rollout.state.failure["check"] == "error_rate"
    assert rollout.state.failure["value"] == 0.5
    assert rollout.state.failure["threshold"] == 0.05
    assert "error_rate" in rollout.state.reason


async def test_a_pass_between_failures_resets_the_count(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    for _ in range(5):
        await rollout.evaluate(FAIL)
        await rollout.evaluate(PASS)
    assert rollout.phase == "progressing"


async def test_no_data_between_failures_neither_counts_nor_resets(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    await rollout.evaluate(FAIL)
    await rollout.evaluate(NODATA)
    assert rollout.phase == "progressing"
    await rollout.evaluate(FAIL)
    assert rollout.phase == "rolled_back"


async def test_source_errors_roll_back_only_when_configured(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    for _ in range(10):
        await rollout.evaluate(ERROR)
    assert rollout.phase == "progressing"
    await rollout.evaluate(ERROR, errors_fail=True)
    await rollout.evaluate(ERROR, errors_fail=True)
    assert rollout.phase == "rolled_back"


async def test_rolled_back_stays_rolled_back(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    await rollout.rollback("manual test")
    await hold_passes(rollout, clock, 3600)
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)
    with pytest.raises(RolloutError, match="restart"):
        await rollout.resume()
    with pytest.raises(RolloutError):
        await rollout.promote()
    await rollout.restart()
    assert (rollout.phase, rollout.weight) == ("progressing", 10)
    assert rollout.state.baseline_memory_bytes is None


async def test_promoted_is_still_guarded(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock, rollout={"stages": [100], "hold": 1})
    await rollout.evaluate(FAIL)
    await rollout.evaluate(FAIL)
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)


async def test_pause_resume(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    await rollout.pause()
    await hold_passes(rollout, clock, 600)
    assert (rollout.phase, rollout.weight) == ("paused", 10)
    with pytest.raises(RolloutError):
        await rollout.pause()
    await rollout.resume()
    await hold_passes(rollout, clock, 60)
    assert rollout.weight == 50


async def test_paused_still_rolls_back(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    await rollout.pause()
    await rollout.evaluate(FAIL)
    await rollout.evaluate(FAIL)
    assert rollout.phase == "rolled_back"


async def test_operator_promote(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    await rollout.promote()
    assert (rollout.phase, rollout.weight) == ("progressing", 50)
    await rollout.promote()
    assert (rollout.phase, rollout.weight) == ("promoted", 100)
    with pytest.raises(RolloutError, match="last stage"):
        await rollout.promote()


async def test_set_weight_pauses_and_the_next_stage_is_above_it(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    await rollout.set_weight(30)
    assert (rollout.phase, rollout.weight, rollout.stage()) == ("paused", 30, 0)
    await rollout.resume()
    await hold_passes(rollout, clock, 60)
    assert rollout.weight == 50
    with pytest.raises(RolloutError):
        await rollout.set_weight(101)


async def test_restart_requires_a_rollback(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    with pytest.raises(RolloutError, match="after a rollback"):
        await rollout.restart()


async def test_every_transition_is_saved_and_restored(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    await rollout.promote()
    await rollout.evaluate(FAIL)
    await rollout.evaluate(FAIL)
    again = reload(tmp_path, clock, split={"weight": 99})  # config weight ignored once state exists
    assert (again.phase, again.weight) == ("rolled_back", 0)
    assert [t.kind for t in again.state.history] == ["start", "promote", "rollback"]
    assert again.state.history[-1].actor == "guard"
    await hold_passes(again, clock, 3600)
    assert again.phase == "rolled_back"


async def test_listeners_see_every_transition(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    seen = []
    rollout.listeners.append(lambda _, t, s: seen.append((t.kind, s.weight)))
    await rollout.promote()
    await rollout.rollback()
    assert seen == [("promote", 50), ("rollback", 0)]


async def test_judging_starts_at_the_start_and_again_on_leaving_a_rollback(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    started = clock.now
    assert rollout.judging_since() == started
    clock.now += 30
    await rollout.pause()
    await rollout.resume()
    assert rollout.judging_since() == started  # a pause does not make old readings stale
    clock.now += 30
    await rollout.rollback()
    assert rollout.judging_since() == started
    clock.now += 30
    await rollout.set_weight(5)  # out of rolled_back by hand
    assert rollout.judging_since() == clock.now
    clock.now += 30
    await rollout.rollback()
    clock.now += 30
    await rollout.restart()
    assert rollout.judging_since() == clock.now
    assert reload(tmp_path, clock).judging_since() == clock.now  # it survives a restart


# --------------------------------------------------------------------------- clocks


async def test_a_wall_clock_jump_does_not_promote(tmp_path) -> None:
    """NTP steps the wall clock an hour forward in the middle of a 60 s hold."""
    wall, monotonic = Clock(), Clock()
    rollout = make(tmp_path, wall, monotonic=monotonic)
    for _ in range(4):  # 15 s of passing evaluations
        assert await rollout.evaluate(PASS) is None
        wall.now += 5
        monotonic.now += 5
    wall.now += 3600
    assert await rollout.evaluate(PASS) is None
    assert rollout.weight == 10
    assert rollout_status(rollout)["healthy_for"] == 20
    for _ in range(7):  # the hold ends on the monotonic clock: 60 s after it began
        monotonic.now += 5
        wall.now += 5
        await rollout.evaluate(PASS)
    assert rollout.weight == 10
    monotonic.now += 5
    wall.now += 5
    transition = await rollout.evaluate(PASS)
    assert transition is not None and transition.kind == "promote"
    assert transition.at == wall.now  # timestamps stay wall-clock


async def test_a_wall_clock_jump_back_does_not_stretch_the_hold(tmp_path) -> None:
    wall, monotonic = Clock(), Clock()
    rollout = make(tmp_path, wall, monotonic=monotonic)
    await rollout.evaluate(PASS)
    wall.now -= 3600
    monotonic.now += 60
    transition = await rollout.evaluate(PASS)
    assert transition is not None and transition.kind == "promote"


async def test_judging_since_is_converted_to_the_monotonic_clock_once(tmp_path) -> None:
    wall, monotonic = Clock(), Clock()
    monotonic.now = 50.0
    make(tmp_path, wall, monotonic=monotonic)  # saves the start at wall.now
    wall.now += 30
    monotonic.now += 30
    restarted = make(tmp_path, wall, monotonic=monotonic)
    assert restarted.judging_since_monotonic() == 50.0  # the start, 30 s ago
    wall.now -= 3600  # a later jump changes nothing
    assert restarted.judging_since_monotonic() == 50.0
    await restarted.rollback()
    await restarted.restart()
    assert restarted.judging_since_monotonic() == monotonic.now  # made here: exact


# --------------------------------------------------------------------------- save first


@pytest.mark.parametrize(
    ("action", "args"),
    [("pause", ()), ("promote", ()), ("rollback", ("test",)), ("set_weight", (30.0,))],
)
async def test_an_action_that_cannot_be_saved_changes_nothing(
    tmp_path, clock, caplog, action, args
) -> None:
    disk = Disk()
    rollout = make(tmp_path, clock, writer=disk)
    seen = []
    rollout.listeners.append(lambda _, t, s: seen.append(t.kind))
    path = tmp_path / "state.json"
    before, saved = rollout_status(rollout), path.read_bytes()
    disk.full = True
    with pytest.raises(SaveError, match="No space left on device"):
        await getattr(rollout, action)(*args)
    assert rollout_status(rollout) == before
    assert path.read_bytes() == saved
    assert seen == []
    assert "No space left on device" in caplog.text
    disk.full = False
    await getattr(rollout, action)(*args)
    assert seen == [action]
    assert StateStore(path).load() == {"default": rollout.state}


async def test_a_guard_rollback_that_cannot_be_saved_is_tried_again(
    tmp_path, clock, caplog
) -> None:
    disk = Disk()
    rollout = make(tmp_path, clock, writer=disk)
    disk.full = True
    assert await rollout.evaluate(FAIL) is None
    assert await rollout.evaluate(FAIL) is None  # decided, but not saved: nothing changed
    assert (rollout.phase, rollout.weight) == ("progressing", 10)
    assert "the rollback by guard was not made" in caplog.text
    disk.full = False
    # The next evaluation passes, but new was already judged broken: the rollback goes on.
    transition = await rollout.evaluate(PASS)
    assert transition is not None and transition.kind == "rollback"
    assert rollout.state.failure["check"] == "error_rate"
    assert StateStore(tmp_path / "state.json").load() == {"default": rollout.state}
    assert await rollout.evaluate(PASS) is None


async def test_a_promotion_that_cannot_be_saved_waits_for_the_next_passing_evaluation(
    tmp_path, clock
) -> None:
    disk = Disk()
    rollout = make(tmp_path, clock, writer=disk)
    await hold_passes(rollout, clock, 55)
    disk.full = True
    assert await rollout.evaluate(PASS) is None  # the hold is over, the save fails
    assert rollout.weight == 10
    disk.full = False
    clock.now += 5
    transition = await rollout.evaluate(PASS)
    assert transition is not None and transition.to_weight == 50


async def test_a_memory_baseline_that_cannot_be_saved_changes_nothing(tmp_path, clock) -> None:
    disk = Disk()
    settings = make_settings(
        rollout={"stages": [10, 50, 100], "hold": 60}, state={"path": str(tmp_path / "s.json")}
    )
    migrations = Migrations.restore(
        settings, StateStore(settings.state.path, writer=disk), clock=clock, monotonic=clock
    )
    disk.full = True
    with pytest.raises(SaveError):
        await migrations.set_baselines({"default": 1e8})
    assert migrations.get("default").state.baseline_memory_bytes is None
    assert StateStore(settings.state.path).load()["default"].baseline_memory_bytes is None


# --------------------------------------------------------------------------- sharing the hold


async def test_the_hold_survives_a_restart_without_the_time_nobody_watched(tmp_path) -> None:
    wall, monotonic = Clock(), Clock()
    rollout = make(tmp_path, wall, monotonic=monotonic)
    for _ in range(9):  # 40 s of the 60 s hold
        await rollout.evaluate(PASS)
        wall.now += 5
        monotonic.now += 5
    shared = rollout.shared()
    assert shared.healthy_for == 45
    wall.now += 600  # down for 10 minutes; the new process's monotonic clock starts anew
    later = Clock()
    restarted = make(tmp_path, wall, monotonic=later)
    restarted.adopt(shared, fresh=0.0)
    assert rollout_status(restarted)["healthy_for"] == 45
    assert rollout_status(restarted)["checks"]["error_rate"]["result"] == "pass"
    later.now += 10
    assert await restarted.evaluate(PASS) is None
    later.now += 5
    transition = await restarted.evaluate(PASS)
    assert transition is not None and transition.to_weight == 50


async def test_a_worker_adopts_the_leaders_hold_as_of_now(tmp_path) -> None:
    wall = Clock()
    leader = make(tmp_path, wall, monotonic=Clock())
    await leader.evaluate(PASS)
    wall.now += 20
    leader.monotonic.now += 20
    await leader.evaluate(PASS)
    shared = leader.shared()
    wall.now += 3  # read 3 s after the leader wrote it
    other = make(tmp_path, wall, monotonic=Clock())
    other.adopt(shared, fresh=10.0)
    assert rollout_status(other)["healthy_for"] == 23


async def test_a_hold_from_before_a_transition_is_not_adopted(tmp_path, clock) -> None:
    rollout = make(tmp_path, clock)
    await hold_passes(rollout, clock, 50)
    shared = rollout.shared()
    await rollout.pause()
    await rollout.resume()
    rollout.adopt(shared, fresh=100.0)
    assert rollout_status(rollout)["healthy_for"] is None


async def test_a_save_under_way_is_applied_even_if_its_caller_is_cancelled(tmp_path, clock) -> None:
    """A reload stops the guard while its transition is being written: memory must not stay
    behind the file (the next sync would adopt it without telling the listeners)."""
    writing, release = threading.Event(), threading.Event()

    def slow_disk(path: Path, payload: bytes) -> None:
        writing.set()
        release.wait(5)
        write_atomically(path, payload)

    rollout = make(tmp_path, clock)
    rollout.book.store.writer = slow_disk
    seen = []
    rollout.listeners.append(lambda _, t, s: seen.append(t.kind))
    pausing = asyncio.ensure_future(rollout.pause())
    while not writing.is_set():
        await asyncio.sleep(0.001)
    pausing.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await pausing
    for _ in range(500):  # the save finishes on its own
        if seen:
            break
        await asyncio.sleep(0.01)
    assert seen == ["pause"]
    assert rollout.phase == "paused"
    assert StateStore(tmp_path / "state.json").load() == {"default": rollout.state}
