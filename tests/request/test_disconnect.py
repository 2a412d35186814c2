"""Noticing a client that leaves while its backend is slow, with a short ``after``."""

from __future__ import annotations

import asyncio

from cutover.request.disconnect import ClientWatch, SlowAnswers, wait_for_disconnect


class Response:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


def leaves_after(seconds: float):
    async def receive() -> dict:
        await asyncio.sleep(seconds)
        return {"type": "http.disconnect"}

    return receive


def stays():
    async def receive() -> dict:
        await asyncio.Event().wait()
        return {}

    return receive


def test_wait_for_disconnect_aborts_the_response() -> None:
    messages = iter([{"type": "http.request"}, {"type": "http.disconnect"}])

    async def receive() -> dict:
        return next(messages)

    response = Response()
    asyncio.run(wait_for_disconnect(receive, response))  # type: ignore[arg-type]
    assert response.aborted


def test_a_quick_answer_never_starts_a_watcher() -> None:
    async def main() -> tuple[bool, bool]:
        slow = SlowAnswers(after=0.2)
        watch = ClientWatch(leaves_after(0), slow)
        await asyncio.sleep(0.01)
        watch.stop()
        await asyncio.sleep(0.3)  # past ``after``: nothing was waiting any more
        return watch._watcher is None, watch.client_gone()

    assert asyncio.run(main()) == (True, False)


def test_a_slow_answer_whose_client_leaves_is_cancelled() -> None:
    async def main() -> tuple[bool, bool]:
        slow = SlowAnswers(after=0.02)
        watch = ClientWatch(leaves_after(0.01), slow)
        try:
            await asyncio.sleep(5)  # the backend, slow to answer
        except asyncio.CancelledError:
            gone = watch.client_gone()
            cancelling = asyncio.current_task().cancelling()  # type: ignore[union-attr]
            return gone, cancelling == 0  # client_gone() took the cancellation back
        finally:
            watch.stop()
        return False, False

    assert asyncio.run(main()) == (True, True)


def test_a_slow_answer_whose_client_stays_is_left_alone() -> None:
    async def main() -> tuple[bool, bool]:
        slow = SlowAnswers(after=0.02)
        watch = ClientWatch(stays(), slow)
        await asyncio.sleep(0.1)
        started = watch._watcher is not None
        watch.stop()
        return started, watch.client_gone()

    assert asyncio.run(main()) == (True, False)


def test_the_ticker_ends_when_nothing_waits() -> None:
    async def main() -> bool:
        slow = SlowAnswers(after=0.02)
        ClientWatch(stays(), slow).stop()
        await asyncio.sleep(0.05)
        return slow._ticker is None

    assert asyncio.run(main()) is True
