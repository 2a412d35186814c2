from __future__ import annotations

from pathlib import Path

import pytest

from cutover.rollout import transitions
from cutover.rollout.book import StateBook
from cutover.rollout.state import RolloutState, SaveError, StateStore, Transition
from cutover.vocabulary import Actor, Phase, TransitionKind
from tests.disks import Disk

pytestmark = pytest.mark.anyio


def started(weight: float) -> RolloutState:
    state = RolloutState(phase=Phase.PROGRESSING, weight=weight)
    return transitions.start(state, 1000.0)[1]


def book_over(path: Path, writer: Disk | None = None) -> StateBook:
    store = StateStore(path) if writer is None else StateStore(path, writer=writer)
    book = StateBook(store)
    book.load()
    return book


async def test_a_save_keeps_every_other_migrations_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    book = book_over(path)
    book.save_blocking({"trade-engine": started(10), "strategies": started(25)})
    _, paused = transitions.pause(book.states["strategies"], 1001.0)
    await book.save("strategies", paused)
    assert StateStore(path).load() == {"trade-engine": started(10), "strategies": paused}
    assert book.states == {"trade-engine": started(10), "strategies": paused}


async def test_a_failed_save_leaves_the_book_and_the_file_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    disk = Disk()
    book = book_over(path, disk)
    book.save_blocking({"trade-engine": started(10), "strategies": started(25)})
    states, stamp, content = dict(book.states), book.stamp, path.read_bytes()
    disk.full = True
    _, paused = transitions.pause(book.states["strategies"], 1001.0)
    with pytest.raises(SaveError, match="No space left on device"):
        await book.save("strategies", paused)
    with pytest.raises(SaveError):
        await book.save_many({"trade-engine": paused, "added": started(5)})
    assert book.states == states and book.states["strategies"].phase == Phase.PROGRESSING
    assert book.stamp == stamp
    assert path.read_bytes() == content
    # Nothing was half-applied: the next save that succeeds writes only what it was given.
    disk.full = False
    await book.save("strategies", paused)
    assert StateStore(path).load() == {"trade-engine": started(10), "strategies": paused}


async def test_refresh_adopts_what_another_process_saved(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    ours = book_over(path)
    ours.save_blocking({"trade-engine": started(10), "strategies": started(25)})
    theirs = book_over(path)  # another worker, over the same file
    assert await ours.refresh() is False  # nobody saved since
    rollback = Transition(
        1002.0, Phase.PROGRESSING, Phase.ROLLED_BACK, 10.0, 0.0, "error_rate 0.3 > 0.05",
        Actor.GUARD, TransitionKind.ROLLBACK,
    )  # fmt: skip
    rolled_back = RolloutState(
        phase=Phase.ROLLED_BACK,
        weight=0.0,
        reason=rollback.reason,
        history=[*started(10).history, rollback],
    )
    await theirs.save("trade-engine", rolled_back)
    assert ours.states["trade-engine"].phase == Phase.PROGRESSING  # not looked yet
    assert await ours.refresh() is True
    assert ours.states == {"trade-engine": rolled_back, "strategies": started(25)}
    assert ours.stamp == theirs.stamp
    assert await ours.refresh() is False
    # What this process saves next keeps the other process's change.
    _, paused = transitions.pause(ours.states["strategies"], 1003.0)
    await ours.save("strategies", paused)
    assert StateStore(path).load() == {"trade-engine": rolled_back, "strategies": paused}


async def test_a_book_over_no_file_is_empty_until_the_first_save(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    book = book_over(path)
    assert (book.states, book.stamp) == ({}, None)
    assert await book.refresh() is False
    await book.save("default", started(10))
    assert path.exists() and book.stamp == StateStore(path).stamp()
