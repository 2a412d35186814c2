"""The per-backend cap on requests in flight, without sockets."""

from __future__ import annotations

import asyncio

from cutover.request.slots import Overloaded, backend_slots, retry_after, wait_for_slot
from tests.conftest import make_settings


def test_one_semaphore_per_backend_with_the_configured_places() -> None:
    async def main() -> None:
        settings = make_settings(
            backends={"v3": {"url": "http://v3.test"}}, limits={"max_concurrent_per_backend": 2}
        )
        slots = backend_slots(settings.limits, settings.backends)
        assert set(slots) == {"legacy", "new", "v3"}
        for slot in slots.values():
            await slot.acquire()
            assert not slot.locked()
            await slot.acquire()
            assert slot.locked()

    asyncio.run(main())


def test_a_waiter_gets_the_place_that_frees() -> None:
    async def main() -> bool:
        slot = asyncio.Semaphore(1)
        await slot.acquire()
        asyncio.get_running_loop().call_later(0.01, slot.release)
        return await wait_for_slot(slot, 5.0)

    assert asyncio.run(main()) is True


def test_a_waiter_gives_up_after_the_timeout() -> None:
    async def main() -> tuple[bool, bool]:
        slot = asyncio.Semaphore(1)
        await slot.acquire()
        took = await wait_for_slot(slot, 0.01)
        return took, slot.locked()

    assert asyncio.run(main()) == (False, True)


def test_retry_after_is_the_queue_timeout_rounded_at_least_one_second() -> None:
    assert retry_after(make_settings(limits={"queue_timeout": 5}).limits) == 5
    assert retry_after(make_settings(limits={"queue_timeout": 2.6}).limits) == 3
    assert retry_after(make_settings(limits={"queue_timeout": 0.2}).limits) == 1


def test_overloaded_names_the_backend() -> None:
    error = Overloaded("new")
    assert error.backend == "new"
    assert "new backend" in str(error)
