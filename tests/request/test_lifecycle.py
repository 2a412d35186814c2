"""cutover.request.lifecycle: the gate's state at each moment, kept until the next boundary."""

from __future__ import annotations

from datetime import UTC, datetime

from cutover.config import DeprecationConfig
from cutover.request.lifecycle import DeprecationGate
from cutover.vocabulary import Lifecycle


def ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def gate(**extra: object) -> DeprecationGate:
    config = DeprecationConfig.model_validate({
        "deprecated_at": "2026-12-01", "sunset_at": "2027-06-01",
        "brownouts": [{"schedule": "0 14 * * 1", "duration": "1h", "from": "2027-04-01"}],
        **extra,
    })  # fmt: skip
    return DeprecationGate("orders", "/api/orders", config)


def test_the_lifecycle_through_a_window_and_the_sunset() -> None:
    g = gate()
    monday = ts(2027, 4, 5, 14)
    assert g.state(monday - 1).lifecycle == Lifecycle.DEPRECATED
    during = g.state(monday)
    assert (during.lifecycle, during.window_end) == (Lifecycle.BROWNOUT, monday + 3600)
    assert g.state(monday + 3600).lifecycle == Lifecycle.DEPRECATED
    assert g.state(ts(2027, 6, 1)).lifecycle == Lifecycle.SUNSET
    assert g.state(ts(2027, 6, 1) - 1).lifecycle == Lifecycle.DEPRECATED  # the clock went back


def test_the_state_is_kept_until_the_next_boundary(monkeypatch) -> None:
    g = gate()
    calls = []
    real = g.schedule.active
    monkeypatch.setattr(g.schedule, "active", lambda t: calls.append(t) or real(t))
    monday = ts(2027, 4, 5, 14)
    first = g.state(monday - 86400)
    assert first.until == monday  # the next window's start
    for step in range(1000):
        assert g.state(monday - 86400 + step * 60) is first
    assert len(calls) == 1
    window = g.state(monday + 10)
    assert window.until == monday + 3600 and len(calls) == 2
    assert g.state(monday + 3599) is window and len(calls) == 2


def test_the_last_window_before_the_sunset_ends_at_the_next_boundary() -> None:
    g = gate()
    last_monday = ts(2027, 5, 31, 14)
    state = g.state(last_monday + 1)
    assert state.lifecycle == Lifecycle.BROWNOUT and state.until == last_monday + 3600
    after = g.state(last_monday + 3600)
    assert after.lifecycle == Lifecycle.DEPRECATED and after.until == ts(2027, 6, 1)
