"""Failed sign-ins slow their client down, more each time, without holding up anyone else;
parallel guesses from one client wait behind each other."""

from __future__ import annotations

import asyncio

import pytest

from cutover.console.throttle import SignInThrottle

pytestmark = pytest.mark.anyio


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


async def fail(throttle: SignInThrottle, client: str) -> None:
    async with throttle.attempt(client) as attempt:
        attempt.fail()


async def test_each_failure_doubles_the_next_wait_up_to_the_cap() -> None:
    sleeps = Sleeps()
    throttle = SignInThrottle(base=0.5, cap=4.0, sleep=sleeps)
    for _ in range(6):
        await fail(throttle, "10.0.0.1")
    assert sleeps.waits == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert throttle.delay("10.0.0.1") == 4.0
    assert throttle.delay("10.0.0.2") == 0.0  # another client is not slowed


async def test_a_success_forgets_the_failures() -> None:
    sleeps = Sleeps()
    throttle = SignInThrottle(sleep=sleeps)
    await fail(throttle, "a")
    await fail(throttle, "a")
    async with throttle.attempt("a"):
        pass
    assert throttle.delay("a") == 0.0 and "a" not in throttle.failures


async def test_parallel_guesses_from_one_client_are_taken_one_at_a_time() -> None:
    sleeps = Sleeps()
    throttle = SignInThrottle(base=1.0, cap=100.0, sleep=sleeps)
    await asyncio.gather(*(fail(throttle, "a") for _ in range(4)))
    # Had they shared one wait, each would have waited 0 (or 1) s.
    assert sleeps.waits == [1.0, 2.0, 4.0]
    assert throttle._turns == {}  # nothing left behind


async def test_the_clients_remembered_are_bounded() -> None:
    throttle = SignInThrottle(clients=3, sleep=Sleeps())
    for client in "abcde":
        await fail(throttle, client)
    assert list(throttle.failures) == ["c", "d", "e"]
