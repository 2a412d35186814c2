from __future__ import annotations

from cutover.config import BreakerConfig
from cutover.request.breaker import CircuitBreaker
from cutover.vocabulary import BreakerState
from tests.clocks import Clock


def make(**config) -> tuple[CircuitBreaker, Clock, list[tuple[str, str]]]:
    clock = Clock(100.0)
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        BreakerConfig(**config), clock=clock, on_change=lambda a, b: changes.append((a, b))
    )
    return breaker, clock, changes


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record(False)


def test_consecutive_failures_open_it() -> None:
    breaker, _, changes = make(failures=5)
    fail(breaker, 4)
    assert breaker.state == "closed"
    breaker.allow()
    breaker.record(True)  # a success resets the run
    fail(breaker, 4)
    assert breaker.state == "closed"
    fail(breaker, 1)
    assert breaker.state == "open"
    assert changes == [("closed", "open")]
    assert not breaker.allow()


def test_a_failure_ratio_over_the_window_opens_it() -> None:
    breaker, _clock, _ = make(failures=100, failure_ratio=0.5, window=10, min_requests=20)
    for i in range(19):
        breaker.allow()
        breaker.record(i % 2 == 0)  # 9 failures of 19: below min_requests anyway
    assert breaker.state == "closed"
    breaker.allow()
    breaker.record(False)  # 10 of 20
    assert breaker.state == "open"


def test_old_outcomes_leave_the_window() -> None:
    breaker, clock, _ = make(failures=100, failure_ratio=0.5, window=10, min_requests=4)
    fail(breaker, 3)
    clock.now += 11
    for _ in range(3):
        breaker.allow()
        breaker.record(True)
    breaker.allow()
    breaker.record(False)  # 1 of 4 in the window, not 4 of 7
    assert breaker.state == "closed"


def test_cooldown_then_probes_close_it() -> None:
    breaker, clock, changes = make(failures=1, cooldown=10, probes=3)
    fail(breaker, 1)
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.2
    admitted = [breaker.allow() for _ in range(5)]
    assert admitted == [True, True, True, False, False]  # at most `probes` at once
    assert breaker.state == "half_open"
    for _ in range(3):
        breaker.record(True)
    assert breaker.state == "closed"
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_reopens_it() -> None:
    breaker, clock, _ = make(failures=1, cooldown=10, probes=2)
    fail(breaker, 1)
    clock.now += 10
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state == "open"
    assert not breaker.allow()  # a fresh cooldown


def test_forgotten_probes_free_their_place() -> None:
    breaker, clock, _ = make(failures=1, cooldown=1, probes=1)
    fail(breaker, 1)
    clock.now += 1
    assert breaker.allow()
    assert not breaker.allow()
    breaker.forget()  # the client left before new answered
    assert breaker.allow()


def test_states_are_the_vocabularys_members() -> None:
    breaker, clock, changes = make(failures=1, cooldown=5, probes=1)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker, 1)
    clock.now += 5
    assert breaker.allow()
    breaker.record(True)
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert all(isinstance(state, BreakerState) for change in changes for state in change)
    assert breaker.status()["state"] is BreakerState.CLOSED
