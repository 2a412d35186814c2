"""The state lock as a serving process takes it: in a thread, and never left held."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from pathlib import Path

import pytest

from cutover.rollout.coordination import Coordination

pytestmark = pytest.mark.anyio


def free(coordination: Coordination) -> bool:
    """Whether another process could take the state lock now."""
    fd = os.open(coordination._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


class OtherWorker:
    """Another process's hold on the state lock (a thread here), let go on ``release()``."""

    def __init__(self, path: Path) -> None:
        self.holding, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(path,))
        self._thread.start()
        assert self.holding.wait(5)

    def _hold(self, path: Path) -> None:
        with Coordination(path).state_lock():
            self.holding.set()
            self._release.wait(5)

    def release(self) -> None:
        self._release.set()
        self._thread.join(5)


class Gates:
    """When the thread of ``coordination.locked()`` starts waiting for the flock, and gets it."""

    def __init__(self, coordination: Coordination, monkeypatch: pytest.MonkeyPatch) -> None:
        self.waiting, self.got = threading.Event(), threading.Event()
        acquire = coordination._acquire

        def acquire_telling() -> int:
            self.waiting.set()
            fd = acquire()
            self.got.set()
            return fd

        monkeypatch.setattr(coordination, "_acquire", acquire_telling)


async def wait_for_the_lock(coordination: Coordination) -> None:
    async with coordination.locked():
        pytest.fail("the cancelled waiter ran")


async def waiter_in_its_thread(coordination: Coordination, gates: Gates) -> asyncio.Task[None]:
    """A waiter for the lock, once its thread waits for the flock (a thread not yet started
    would just be cancelled with it)."""
    waiter = asyncio.ensure_future(wait_for_the_lock(coordination))
    assert await asyncio.to_thread(gates.waiting.wait, 5)
    return waiter


async def let_go_after(gates: Gates, coordination: Coordination) -> bool:
    """Whether the lock is free soon after the waiter's thread got it."""
    assert await asyncio.to_thread(gates.got.wait, 5)  # before: free() would say nothing of it
    deadline = asyncio.get_running_loop().time() + 5
    while not free(coordination) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    return free(coordination)


async def test_a_waiter_cancelled_before_it_gets_the_lock_does_not_keep_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    ours = Coordination(path)
    gates = Gates(ours, monkeypatch)
    other = OtherWorker(path)
    waiter = await waiter_in_its_thread(ours, gates)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    other.release()
    # The waiter's thread gets the lock after the other worker lets go: it must let go too.
    assert await let_go_after(gates, ours)
    async with ours.locked():  # and this process can take it again
        assert not free(ours)


async def test_a_waiter_left_as_its_loop_stops_does_not_keep_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    ours = Coordination(path)
    gates = Gates(ours, monkeypatch)
    other = OtherWorker(path)
    before = asyncio.all_tasks()
    await waiter_in_its_thread(ours, gates)
    # What a stopping loop does (asyncio.run): every task left cancelled at once, and no
    # callback of theirs runs once the loop is gone.
    left = asyncio.all_tasks() - before
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    other.release()
    assert await let_go_after(gates, ours)
