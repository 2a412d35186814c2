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


async def test_a_waiter_cancelled_before_it_gets_the_lock_does_not_keep_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    ours = Coordination(path)
    holding, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        with Coordination(path).state_lock():
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=other_worker)
    thread.start()
    assert holding.wait(5)

    async def wait_for_the_lock() -> None:
        async with ours.locked():
            pytest.fail("the cancelled waiter ran")

    waiter = asyncio.ensure_future(wait_for_the_lock())
    await asyncio.sleep(0)  # it runs up to its wait for the thread
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    thread.join(5)
    # The waiter's thread got the lock after the other worker let go: it must let go too.
    deadline = asyncio.get_running_loop().time() + 15  # a loaded machine: the thread is slow
    while not free(ours) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert free(ours)
    async with ours.locked():  # and this process can take it again
        assert not free(ours)
