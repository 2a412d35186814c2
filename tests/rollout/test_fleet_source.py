"""The fleet's counters summed by the guard leader (``FleetTotal``, ``FleetSource``), without
Redis: each host's counters come from its own metrics registry, and a board in memory
stands in for where they are published (``test_fleet_counters.py`` runs the real one)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace

import pytest

from cutover.request.metrics import Metrics
from cutover.rollout.fleet_counters import CountersUnavailable
from cutover.rollout.fleet_source import FleetSource, FleetTotal
from cutover.rollout.guard import Guard
from cutover.rollout.registry import Migrations
from cutover.rollout.sources import (
    CounterSnapshot,
    EmbeddedSource,
    Observation,
    Subject,
    read_counters,
)
from cutover.rollout.state import StateStore
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

ENGINE = Subject("trade-engine", source="legacy", target="new")
KEY = ("trade-engine", "new")


def traffic(metrics: Metrics, requests: int, errors: int = 0, seconds: float = 0.01) -> None:
    """``requests`` to new, ``errors`` of them failing."""
    for i in range(requests):
        code = "5xx" if i < errors else "2xx"
        metrics.observe("trade-engine", "new", "default", code, seconds)


def counted(metrics: Metrics, boot: str = "run-1") -> CounterSnapshot:
    return replace(read_counters(metrics), boot=boot)


class Board:
    """Where hosts publish, in memory; ``down``: as if Redis could not be reached."""

    def __init__(self) -> None:
        self.published: dict[str, CounterSnapshot] = {}
        self.down = False

    def host(self, name: str) -> BoardHost:
        return BoardHost(self, name)


class BoardHost:
    def __init__(self, board: Board, host: str) -> None:
        self.board, self.host, self.boot = board, host, f"{host}-run"

    async def publish(self, snapshot: CounterSnapshot) -> None:
        if self.board.down:
            raise CountersUnavailable("Connection refused")
        self.board.published[self.host] = snapshot

    async def read_all(self) -> dict[str, CounterSnapshot]:
        if self.board.down:
            raise CountersUnavailable("Connection refused")
        return dict(self.board.published)


# --------------------------------------------------------------------------- FleetTotal


def test_two_hosts_increases_are_summed() -> None:
    a, b = Metrics(), Metrics()
    traffic(a, 500, errors=5)  # before the first reading: older than any window
    total = FleetTotal(forget=60)
    first = total.add(0, {"a": counted(a), "b": counted(b)})
    assert first.requests == {}  # a host seen for the first time adds nothing
    traffic(a, 10)
    traffic(b, 30, errors=30, seconds=2.0)
    second = total.add(5, {"a": counted(a), "b": counted(b)})
    assert (second.requests[KEY], second.errors[KEY]) == (40, 30)
    assert second.buckets[KEY][-1] == 40  # the latency buckets are summed too
    assert total.hosts == ["a", "b"]


def test_a_host_that_restarted_counts_from_zero() -> None:
    before, after = Metrics(), Metrics()  # one host's two runs
    traffic(before, 100)
    total = FleetTotal(forget=60)
    total.add(0, {"a": counted(before, "run-1")})
    traffic(before, 20)
    assert total.add(5, {"a": counted(before, "run-1")}).requests[KEY] == 20
    # Restarted under the same name: its new run's counters are lower, all of them new.
    traffic(after, 7, errors=7)
    restarted = total.add(10, {"a": counted(after, "run-2")})
    assert (restarted.requests[KEY], restarted.errors[KEY]) == (27, 7)
    traffic(after, 3)
    assert total.add(15, {"a": counted(after, "run-2")}).requests[KEY] == 30


def test_a_host_gone_adds_nothing_more() -> None:
    a, b = Metrics(), Metrics()
    total = FleetTotal(forget=60)
    total.add(0, {"a": counted(a), "b": counted(b)})
    traffic(a, 10)
    traffic(b, 50, errors=20)
    assert total.add(5, {"a": counted(a), "b": counted(b)}).requests[KEY] == 60
    traffic(b, 1000)  # never published: b died
    traffic(a, 5)
    gone = total.add(10, {"a": counted(a)})
    # What b counted while it was there stays in the total (still in the window).
    assert (gone.requests[KEY], gone.errors[KEY]) == (65, 20)


def test_a_host_unseen_for_a_window_is_new_again() -> None:
    a = Metrics()
    total = FleetTotal(forget=60)
    total.add(0, {"a": counted(a)})
    traffic(a, 500, errors=500)  # counted while Redis was out of reach, long ago
    assert total.add(100, {"a": counted(a)}).requests == {}
    traffic(a, 4)
    assert total.add(105, {"a": counted(a)}).requests[KEY] == 4


def test_counters_published_out_of_order_never_count_down() -> None:
    a = Metrics()
    traffic(a, 10)
    older = counted(a)
    traffic(a, 5)
    total = FleetTotal(forget=60)
    total.add(0, {"a": counted(a)})
    # Two workers of one host publishing under one name: the later write is the older one.
    assert total.add(1, {"a": older}).requests.get(KEY, 0) == 0
    traffic(a, 2)
    assert total.add(2, {"a": counted(a)}).requests[KEY] >= 2


# --------------------------------------------------------------------------- FleetSource


async def observe(source: FleetSource, now: float) -> Observation:
    return (await source.observe(now, [ENGINE]))["trade-engine"]


async def test_the_leader_judges_the_traffic_of_hosts_it_never_served() -> None:
    board = Board()
    leader_metrics, other_metrics = Metrics(), Metrics()
    leader = FleetSource(leader_metrics, 60, board.host("leader"))
    other = FleetSource(other_metrics, 60, board.host("other"))
    for now in (0, 5):
        await other.share()
        await leader.share()
        seen = await observe(leader, now)
        traffic(other_metrics, 40, errors=12)
    assert (seen.new_requests, seen.new_errors) == (40, 12)
    await other.share()
    await leader.share()
    seen = await observe(leader, 10)
    assert (seen.new_requests, seen.new_errors) == (80, 24)
    recent = seen.recent
    assert recent is not None and (recent.new_requests, recent.new_errors) == (40, 12)
    assert read_counters(leader_metrics).requests == {}  # the leader served nothing


async def test_without_redis_the_leader_judges_its_own_traffic(caplog) -> None:
    board = Board()
    leader_metrics, other_metrics = Metrics(), Metrics()
    leader = FleetSource(leader_metrics, 60, board.host("leader"))
    other = FleetSource(other_metrics, 60, board.host("other"))
    await other.share()
    await observe(leader, 0)
    board.down = True
    traffic(other_metrics, 100, errors=100)
    traffic(leader_metrics, 10, errors=1)
    with caplog.at_level(logging.WARNING, "cutover.guard"):
        for now in (5, 10):
            await other.share()
            await leader.share()  # never raises
            seen = await observe(leader, now)
    assert (seen.new_requests, seen.new_errors) == (10, 1)  # the leader's alone
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [  # once each, not every interval
        "fleet counters: this host's counters were not published: Connection refused",  # other
        "fleet counters: this host's counters were not published: Connection refused",
        "fleet counters: judging this host's traffic alone: Connection refused",
    ]
    board.down = False
    traffic(other_metrics, 5)
    await other.share()
    seen = await observe(leader, 15)
    # Back: the other host's counts while Redis was out of reach come in too.
    assert (seen.new_requests, seen.new_errors) == (115, 101)


async def test_the_file_backend_source_is_this_hosts_counters(tmp_path) -> None:
    """No Redis: the embedded source of one host, exactly as before (``test_sources.py``)."""
    metrics = Metrics()
    source = EmbeddedSource(metrics, window=60)
    await source.observe(0, [ENGINE])
    traffic(metrics, 9, errors=3)
    seen = (await source.observe(5, [ENGINE]))["trade-engine"]
    assert (seen.new_requests, seen.new_errors) == (9, 3)


class Follower:
    """A coordination where another host leads."""

    epoch = None
    alone = False
    leading = False

    async def try_lead(self) -> bool:
        return False

    def locked(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


async def test_every_host_publishes_at_every_tick_leading_or_not(tmp_path) -> None:
    settings = make_settings(state={"path": str(tmp_path / "state.json")})
    migrations = Migrations.restore(settings, StateStore(settings.state.path))
    metrics = Metrics()
    board = Board()
    source = FleetSource(metrics, 60, board.host("follower"))
    observed: list[float] = []

    async def observe_(now: float, subjects: Sequence[Subject]) -> dict[str, Observation]:
        observed.append(now)
        return {}

    guard = Guard(
        settings.guard, migrations, [], metrics, observe_,
        coordination=Follower(), share=source.share,  # type: ignore[arg-type]
    )  # fmt: skip
    traffic(metrics, 3)
    assert await guard.tick() == {}
    assert board.published["follower"].requests[KEY] == 3
    traffic(metrics, 2)
    await guard.tick()
    assert board.published["follower"].requests[KEY] == 5
    assert observed == []  # only the leader judges
