"""The Redis state book against a real ``redis-server``: versioned documents written by
compare-and-set, fencing of an old guard leader, failing static while Redis is down, and the
local cache a host starts from without Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cutover.config import Settings
from cutover.ops.state_backend import StateBackendParts, open_state
from cutover.request.metrics import Metrics
from cutover.rollout import transitions
from cutover.rollout.redis_book import RedisBook
from cutover.rollout.state import RolloutState, StateError, StateStore
from cutover.rollout.store_errors import Fenced, StateConflict, StoreUnavailable
from cutover.vocabulary import Actor, Phase, TransitionKind
from tests.conftest import make_settings
from tests.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.anyio

PREFIX = "cutover:test"
Open = Callable[..., StateBackendParts]


@pytest.fixture
async def open_host(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Open]:
    """``open_host("a")``: host a's state backend on the test's Redis, as the gateway opens
    it (its own cache file); closed after the test."""
    opened: list[StateBackendParts] = []

    def open_one(host: str, *, prefix: str = PREFIX, **state: Any) -> StateBackendParts:
        parts = open_state(settings_for(redis_server, tmp_path, host, prefix, **state), Metrics())
        opened.append(parts)
        return parts

    yield open_one
    for parts in opened:
        await parts.aclose()


def settings_for(
    server: RedisServer,
    tmp_path: Path,
    host: str,
    prefix: str = PREFIX,
    sections: dict[str, Any] | None = None,
    **state: Any,
) -> Settings:
    section = {
        "backend": "redis",
        "url": server.url,
        "key_prefix": prefix,
        "cache_path": str(tmp_path / f"{host}-cache.json"),
        "host_id": host,
        **state,
    }
    return make_settings(state=section, **(sections or {}))


def redis_book(parts: StateBackendParts) -> RedisBook:
    assert isinstance(parts.book, RedisBook)
    return parts.book


def loaded(parts: StateBackendParts) -> RedisBook:
    book = redis_book(parts)
    book.load()
    return book


def started(weight: float, at: float = 1000.0) -> RolloutState:
    state = RolloutState(phase=Phase.PROGRESSING, weight=weight)
    return transitions.start(state, at)[1]


def paused(state: RolloutState, at: float = 1001.0) -> RolloutState:
    return transitions.pause(state, at)[1]


def promoted(state: RolloutState, weight: float, at: float = 1001.0) -> RolloutState:
    reason = "every check passed for the stage's hold"
    change = transitions.transition(
        state, at, state.phase, weight, reason, Actor.GUARD, TransitionKind.PROMOTE
    )
    return change[1]


def rolled_back(state: RolloutState, at: float = 1002.0) -> RolloutState:
    return transitions.rollback(state, at, "the guard's verdict")[1]


def document(server: RedisServer, key: str) -> tuple[int, dict[str, Any]]:
    """A migration's document in Redis, read by a plain client: (rev, state)."""
    raw = redis.Redis.from_url(server.url).hgetall(key)
    return int(raw[b"rev"]), json.loads(raw[b"state"])


def kinds(state: RolloutState) -> list[TransitionKind]:
    return [transition.kind for transition in state.history]


async def test_an_empty_redis_loads_as_no_state_and_caches_it(
    open_host: Open, tmp_path: Path
) -> None:
    book = loaded(open_host("a"))
    assert book.states == {}
    assert book.available
    assert StateStore(tmp_path / "a-cache.json").load() == {}


async def test_starts_are_written_as_versioned_documents(
    open_host: Open, redis_server: RedisServer
) -> None:
    book = loaded(open_host("a"))
    book.save_blocking({"trade-engine": started(10), "strategies": started(25)})
    rev, state = document(redis_server, f"{PREFIX}:migration:trade-engine")
    assert rev == 1
    assert (state["phase"], state["weight"]) == ("progressing", 10)
    client = redis.Redis.from_url(redis_server.url)
    assert client.smembers(f"{PREFIX}:migrations") == {b"trade-engine", b"strategies"}
    # A second host starting the same migration from nothing loses: the first start stays.
    other = loaded(open_host("b"))
    assert set(other.states) == {"trade-engine", "strategies"}
    other.revs.clear()
    other.states.clear()
    with pytest.raises(StateConflict, match="trade-engine"):
        other.save_blocking({"trade-engine": started(50)})
    assert document(redis_server, f"{PREFIX}:migration:trade-engine")[0] == 1


async def test_a_write_after_another_hosts_loses_and_holds_the_winners_document(
    open_host: Open, redis_server: RedisServer
) -> None:
    first, second = loaded(open_host("a")), loaded(open_host("b"))
    first.save_blocking({"trade-engine": started(10)})
    second.load()
    base = second.states["trade-engine"]
    winner = paused(first.states["trade-engine"])
    await first.save("trade-engine", winner)
    with pytest.raises(StateConflict, match="another host changed it first"):
        await second.save("trade-engine", rolled_back(base))
    # Nothing was overwritten, and the loser now holds what won, to decide again on it.
    assert document(redis_server, f"{PREFIX}:migration:trade-engine")[1]["phase"] == "paused"
    assert second.states["trade-engine"] == winner
    assert second.revs["trade-engine"] == first.revs["trade-engine"] == 2
    # Deciding again on the winner's document succeeds, and keeps its history.
    await second.save("trade-engine", rolled_back(second.states["trade-engine"]))
    rev, state = document(redis_server, f"{PREFIX}:migration:trade-engine")
    assert rev == 3
    assert [t["kind"] for t in state["history"]] == ["start", "pause", "rollback"]


async def test_a_guard_write_with_an_old_epoch_is_fenced(
    open_host: Open, redis_server: RedisServer
) -> None:
    old, new = open_host("a"), open_host("b")
    book = loaded(old)
    book.save_blocking({"trade-engine": started(10)})
    assert await old.coordination.try_lead()
    stale = old.coordination.epoch
    # The old leader's lease is gone (paused past it); another host leads, a newer epoch.
    redis.Redis.from_url(redis_server.url).delete(f"{PREFIX}:guard:leader")
    assert await new.coordination.try_lead()
    assert new.coordination.epoch > stale
    with book.fenced(stale), pytest.raises(Fenced, match="newer guard leader"):
        await book.save("trade-engine", rolled_back(book.states["trade-engine"]))
    assert document(redis_server, f"{PREFIX}:migration:trade-engine")[1]["phase"] == "progressing"
    assert book.states["trade-engine"].phase == Phase.PROGRESSING
    # The new leader's write, with the current epoch, goes through.
    other = loaded(new)
    with other.fenced(new.coordination.epoch):
        await other.save("trade-engine", rolled_back(other.states["trade-engine"]))
    assert document(redis_server, f"{PREFIX}:migration:trade-engine")[1]["phase"] == "rolled_back"


async def test_with_redis_stopped_an_operators_write_is_refused_and_changes_nothing(
    open_host: Open, redis_server: RedisServer, tmp_path: Path
) -> None:
    book = loaded(open_host("a"))
    book.save_blocking({"trade-engine": started(10)})
    before = book.states["trade-engine"]
    redis_server.stop()
    with pytest.raises(StoreUnavailable, match=f"state store {redis_server.url}"):
        await book.save("trade-engine", paused(before))
    assert book.states["trade-engine"] is before
    assert not book.available
    assert not book.pending
    # A guard's move up (a promotion) is refused as well: only moves towards legacy hold.
    with book.fenced(None), pytest.raises(StoreUnavailable):
        await book.save("trade-engine", promoted(before, 50))
    redis_server.start()
    assert await book.refresh() is False
    assert book.available
    assert document(redis_server, f"{PREFIX}:migration:trade-engine") == (1, before.to_json())
    assert StateStore(tmp_path / "a-cache.json").load() == {"trade-engine": before}


async def test_a_guard_rollback_during_an_outage_is_held_then_written_on_top(
    open_host: Open, redis_server: RedisServer
) -> None:
    ours, theirs = loaded(open_host("a")), loaded(open_host("b"))
    ours.save_blocking({"trade-engine": started(10)})
    theirs.load()
    redis_server.stop()
    rollback = rolled_back(ours.states["trade-engine"], at=1005.0)
    with ours.fenced(None):  # judging alone: Redis is unreachable
        await ours.save("trade-engine", rollback)
    # Held: this host routes to legacy at once, and keeps it for Redis.
    assert ours.states["trade-engine"].phase == Phase.ROLLED_BACK
    assert set(ours.pending) == {"trade-engine"}
    redis_server.start()
    # Another host wrote meanwhile (it saw Redis first).
    await theirs.save("trade-engine", paused(theirs.states["trade-engine"], at=1003.0))
    await ours.refresh()
    assert not ours.pending
    rev, state = document(redis_server, f"{PREFIX}:migration:trade-engine")
    assert rev == 3
    assert (state["phase"], state["weight"]) == ("rolled_back", 0)
    assert [t["kind"] for t in state["history"]] == ["start", "pause", "rollback"]
    assert [t.get("host") for t in state["history"]][1:] == [None, None]
    # The other host follows.
    assert await theirs.refresh()
    assert theirs.states["trade-engine"].phase == Phase.ROLLED_BACK
    assert kinds(theirs.states["trade-engine"]) == [
        TransitionKind.START, TransitionKind.PAUSE, TransitionKind.ROLLBACK,
    ]  # fmt: skip


async def test_a_start_while_redis_is_down_serves_the_cache(
    open_host: Open, redis_server: RedisServer, tmp_path: Path
) -> None:
    book = loaded(open_host("a"))
    book.save_blocking({"trade-engine": started(10)})
    await book.save("trade-engine", paused(book.states["trade-engine"]))
    redis_server.stop()
    restarted = loaded(open_host("a"))
    assert not restarted.available
    assert restarted.states == book.states
    with pytest.raises(StateError, match="redis unreachable and no cached state"):
        loaded(open_host("fresh"))
    assert not (tmp_path / "fresh-cache.json").exists()


async def test_the_cache_file_is_the_last_known_state(
    open_host: Open, redis_server: RedisServer, tmp_path: Path
) -> None:
    ours, theirs = loaded(open_host("a")), loaded(open_host("b"))
    ours.save_blocking({"trade-engine": started(10), "strategies": started(25)})
    await ours.save("strategies", paused(ours.states["strategies"]))
    assert StateStore(tmp_path / "a-cache.json").load() == ours.states
    # What another host wrote is cached too once it is read.
    await theirs.refresh()
    assert StateStore(tmp_path / "b-cache.json").load() == ours.states


async def test_documents_lost_by_redis_are_written_again_by_refresh(
    open_host: Open, redis_server: RedisServer
) -> None:
    book = loaded(open_host("a"))
    book.save_blocking({"trade-engine": started(10), "strategies": started(25)})
    await book.save("strategies", paused(book.states["strategies"]))
    known = dict(book.states)
    redis.Redis.from_url(redis_server.url).flushall()
    await book.refresh()
    assert book.states == known
    assert (
        document(redis_server, f"{PREFIX}:migration:strategies")[1] == known["strategies"].to_json()
    )
    assert loaded(open_host("b")).states == known


async def test_two_deployments_never_see_each_others_state(
    open_host: Open, redis_server: RedisServer
) -> None:
    prod, staging = (
        loaded(open_host("a", prefix="cutover:prod")),
        loaded(open_host("b", prefix="cutover:staging")),
    )
    prod.save_blocking({"trade-engine": started(10)})
    staging.save_blocking({"trade-engine": started(50)})  # no conflict: its own document
    await prod.save("trade-engine", paused(prod.states["trade-engine"]))
    assert not await staging.refresh()
    assert staging.states["trade-engine"].weight == 50
    assert staging.states["trade-engine"].phase == Phase.PROGRESSING
    assert loaded(open_host("c", prefix="cutover:prod")).states == prod.states
    keys = redis.Redis.from_url(redis_server.url).keys("*")
    assert all(k.startswith((b"cutover:prod:", b"cutover:staging:")) for k in keys), keys


async def test_a_move_from_the_file_backend_carries_the_state_file_into_an_empty_redis(
    open_host: Open, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The file backend's state file as ``cache_path``: an empty Redis takes it, nothing reset;
    a second host then reads Redis's copy, not its own (empty) cache."""
    old = paused(promoted(started(10.0), 50.0))
    StateStore(tmp_path / "a-cache.json").save({"trade-engine": old})
    book = loaded(open_host("a"))
    assert book.states == {"trade-engine": old} and book.revs == {"trade-engine": 1}
    assert document(redis_server, f"{PREFIX}:migration:trade-engine")[1] == old.to_json()
    other = loaded(open_host("b"))
    assert other.states == {"trade-engine": old}


async def test_the_password_comes_from_the_environment_and_a_wrong_one_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_redis(tmp_path / "secured", password="s3cret-pass") as server:
        monkeypatch.setenv("CUTOVER_STATE__PASSWORD", "s3cret-pass")
        parts = open_state(settings_for(server, tmp_path, "a"), Metrics())
        book = loaded(parts)
        book.save_blocking({"trade-engine": started(10.0)})
        assert book.states["trade-engine"].weight == 10.0
        await parts.aclose()
        monkeypatch.setenv("CUTOVER_STATE__PASSWORD", "wrong")
        parts = open_state(settings_for(server, tmp_path, "b"), Metrics())
        with pytest.raises(StateError) as refused:
            redis_book(parts).load()
        assert "refused this host" in str(refused.value)
        assert "CUTOVER_STATE__PASSWORD" in str(refused.value)
        await parts.aclose()
