"""Following the fleet: what one host writes, another host's migrations adopt within a second
(a pub/sub hint, and a read every poll when the hint is lost); an operator action that loses
a race with another host is decided again on what that host wrote."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cutover.ops.state_backend import StateBackendParts, open_state
from cutover.request.metrics import Metrics
from cutover.rollout.control import Control
from cutover.rollout.follower import StateFollower
from cutover.rollout.redis_keys import RedisKeys
from cutover.rollout.registry import Migrations
from cutover.rollout.store_errors import StateConflict
from cutover.vocabulary import Phase, TransitionKind
from tests.redis_server import RedisServer
from tests.rollout.test_redis_book import PREFIX, settings_for

pytestmark = pytest.mark.anyio

NAME = "default"
ROLLOUT = {"rollout": {"stages": [10, 50, 100]}}
FOLLOW_DEADLINE = 1.0  # the brief: every host follows within a second


@dataclass
class Host:
    name: str
    parts: StateBackendParts
    migrations: Migrations
    control: Control


@pytest.fixture
async def open_host(
    redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[Callable[..., Host]]:
    opened: list[Host] = []

    def open_one(name: str, **state: Any) -> Host:
        settings = settings_for(redis_server, tmp_path, name, sections=ROLLOUT, **state)
        parts = open_state(settings, Metrics())
        migrations = Migrations.restore(settings, parts.book, host=parts.fleet_host)
        host = Host(name, parts, migrations, Control(migrations, parts.coordination))
        opened.append(host)
        return host

    yield open_one
    for host in opened:
        await host.parts.aclose()


@contextlib.asynccontextmanager
async def following(
    host: Host, *, poll: float, keys: RedisKeys | None = None
) -> AsyncIterator[None]:
    follower = StateFollower(
        host.migrations, host.parts.coordination, host.parts.redis,
        keys or RedisKeys(PREFIX), poll=poll,
    )  # fmt: skip
    task = asyncio.create_task(follower.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def within(seconds: float, predicate: Callable[[], bool]) -> float:
    """How long until ``predicate()`` held; fails after ``seconds``."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < seconds, f"not within {seconds}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def phase(host: Host) -> Phase:
    return host.migrations.get(NAME).state.phase


async def test_a_change_is_adopted_within_a_second_by_the_pubsub_hint(
    open_host: Callable[..., Host],
) -> None:
    writer, reader = open_host("a"), open_host("b")
    adopted: list[tuple[str, Phase]] = []
    reader.migrations.sync_listeners.append(lambda name, state: adopted.append((name, state.phase)))
    # A poll far longer than the deadline: only the hint can be in time.
    async with following(reader, poll=30.0):
        await asyncio.sleep(1.5)  # idle longer than the client's socket timeout first
        await writer.control.pause(NAME)
        await within(FOLLOW_DEADLINE, lambda: phase(reader) == Phase.PAUSED)
        await writer.control.rollback(NAME, "by hand")
        await within(FOLLOW_DEADLINE, lambda: phase(reader) == Phase.ROLLED_BACK)
    assert adopted == [(NAME, Phase.PAUSED), (NAME, Phase.ROLLED_BACK)]
    assert reader.migrations.get(NAME).state.weight == 0


async def test_a_change_is_adopted_by_polling_when_no_hint_arrives(
    open_host: Callable[..., Host],
) -> None:
    writer, reader = open_host("a"), open_host("b")
    deaf = RedisKeys("elsewhere")  # subscribed to a channel nobody announces on
    async with following(reader, poll=0.3, keys=deaf):
        await writer.control.pause(NAME)
        await within(FOLLOW_DEADLINE, lambda: phase(reader) == Phase.PAUSED)


async def test_an_action_that_lost_a_race_is_decided_again_on_the_winners_state(
    open_host: Callable[..., Host],
) -> None:
    first, second = open_host("a"), open_host("b")
    await first.control.pause(NAME)
    # ``second`` has not read since: its own pause loses, then is decided on the pause.
    with pytest.raises(StateConflict):
        await second.migrations.get(NAME).rollback("by hand")
    await second.migrations.sync()
    assert phase(second) == Phase.PAUSED
    made = await second.control.rollback(NAME, "by hand")
    assert made.host == "b"
    history = first.parts.book
    await first.migrations.sync()
    state = first.migrations.get(NAME).state
    assert state.phase == Phase.ROLLED_BACK
    assert [(t.kind, t.host) for t in state.history] == [
        (TransitionKind.START, "a"), (TransitionKind.PAUSE, "a"),
        (TransitionKind.ROLLBACK, "b"),
    ]  # fmt: skip
    assert history.states[NAME] is state
