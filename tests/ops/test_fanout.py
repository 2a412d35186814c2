"""Each migration's rollout transitions applied and announced (``TransitionFanout``): that
migration's weight in the splitter and its gauges, the counters, the log line and the
webhook, each naming the migration; another worker's state applied without an
announcement."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cutover.ops.assembly import create_app
from cutover.ops.fanout import TransitionFanout
from cutover.request.metrics import Metrics
from cutover.rollout.state import RolloutState, Transition
from cutover.vocabulary import Actor, Phase, TransitionKind
from tests.conftest import make_settings

MIGRATIONS = [
    {"name": "trade-engine", "match": {"prefix": "/api/v1/backtests/"}, "from": "legacy",
     "to": "new", "weight": 10},
    {"name": "strategies", "match": {"prefix": "/api/v1/strategies"}, "from": "legacy",
     "to": "new", "weight": 25},
]  # fmt: skip


class Webhook:
    """Records what would have been delivered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    def notify(self, payload: dict[str, Any]) -> None:
        self.sent.append(payload)

    async def aclose(self) -> None:
        self.closed = True


def fanout() -> tuple[TransitionFanout, Metrics]:
    """A fan-out whose gauges show both migrations as the gateway starts them."""
    metrics = Metrics()
    proxy = create_app(make_settings(migrations=MIGRATIONS), metrics=metrics)
    out = TransitionFanout(proxy, metrics)
    for migration in MIGRATIONS:
        metrics.add_migration(migration["name"], migration["from"], migration["to"])
        out.on_sync(migration["name"], RolloutState(Phase.MANUAL, migration["weight"]))
    return out, metrics


def rollback(failure: dict[str, Any] | None) -> tuple[Transition, RolloutState]:
    actor = Actor.GUARD if failure else Actor.OPERATOR
    made = Transition(1763780100.5, Phase.PROGRESSING, Phase.ROLLED_BACK, 50.0, 0.0, "why",
                      actor, TransitionKind.ROLLBACK, failure)  # fmt: skip
    return made, RolloutState(Phase.ROLLED_BACK, 0.0, history=[made])


def weights(out: TransitionFanout) -> dict[str, float]:
    return {name: rule.weight for name, rule in out.proxy.splitter.migrations.items()}


def gauges(metrics: Metrics, migration: str) -> tuple[float | None, list[str]]:
    """The migration's weight gauge, and the phases its phase gauge shows set."""
    registry = metrics.registry
    weight = registry.get_sample_value("cutover_split_weight", {"migration": migration})
    on = [
        phase
        for phase in Phase
        if registry.get_sample_value(
            "cutover_rollout_phase", {"migration": migration, "phase": phase}
        )
    ]
    return weight, on


def test_a_transition_reaches_its_migrations_splitter_gauges_counters_log_and_webhook(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="cutover.rollout")
    out, metrics = fanout()
    webhook = Webhook("http://hooks.test/cutover")
    out.webhook = webhook  # type: ignore[assignment]
    made, state = rollback({"check": "error_rate"})
    out.on_transition("trade-engine", made, state)
    registry = metrics.registry
    assert weights(out) == {"trade-engine": 0, "strategies": 25}
    assert gauges(metrics, "trade-engine") == (0, ["rolled_back"])
    # The phase too: a rolled-back migration's cohorts for to go to from (the splitter's rule).
    rolled = {name: rule.rolled_back for name, rule in out.proxy.splitter.migrations.items()}
    assert rolled == {"trade-engine": True, "strategies": False}
    assert gauges(metrics, "strategies") == (25, ["manual"])  # the other one: untouched
    rolled_back = {"migration": "trade-engine", "reason": "error_rate"}
    assert registry.get_sample_value("cutover_rollbacks_total", rolled_back) == 1
    other = {"migration": "strategies", "reason": "error_rate"}
    assert registry.get_sample_value("cutover_rollbacks_total", other) == 0
    event = {
        "event": "rollout_transition", "migration": "trade-engine",
        "at": "2025-11-22T02:55:00.500Z",
        "from_phase": "progressing", "to_phase": "rolled_back", "from_weight": 50.0,
        "to_weight": 0.0, "reason": "why", "actor": "guard", "kind": "rollback",
        "failure": {"check": "error_rate"},
    }  # fmt: skip
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "cutover.rollout"]
    assert logged == [event]
    assert webhook.sent == [event]


def test_an_operator_rollback_and_a_promotion_are_counted_by_migration() -> None:
    out, metrics = fanout()
    registry = metrics.registry
    out.on_transition("strategies", *rollback(None))
    operator = {"migration": "strategies", "reason": "operator"}
    assert registry.get_sample_value("cutover_rollbacks_total", operator) == 1
    made = Transition(1.0, Phase.PROGRESSING, Phase.PROGRESSING, 10.0, 50.0, "held",
                      Actor.GUARD, TransitionKind.PROMOTE)  # fmt: skip
    out.on_transition("trade-engine", made, RolloutState(Phase.PROGRESSING, 50.0))
    promotions = "cutover_promotions_total"
    assert registry.get_sample_value(promotions, {"migration": "trade-engine"}) == 1
    assert registry.get_sample_value(promotions, {"migration": "strategies"}) == 0
    assert weights(out) == {"trade-engine": 50, "strategies": 0}


def test_another_workers_state_is_applied_not_announced(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="cutover.rollout")
    out, metrics = fanout()
    webhook = Webhook("http://hooks.test/cutover")
    out.webhook = webhook  # type: ignore[assignment]
    out.on_sync("strategies", RolloutState(Phase.PAUSED, 30.0))
    assert weights(out) == {"trade-engine": 10, "strategies": 30}
    assert gauges(metrics, "strategies") == (30, ["paused"])
    assert gauges(metrics, "trade-engine") == (10, ["manual"])
    assert [r for r in caplog.records if r.name == "cutover.rollout"] == []
    assert webhook.sent == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_webhook_follows_its_url(anyio_backend: str) -> None:
    out, _ = fanout()
    await out.use_webhook(None)
    assert out.webhook is None
    await out.use_webhook("http://hooks.test/one")
    first = out.webhook
    await out.use_webhook("http://hooks.test/one")
    assert out.webhook is first  # the same URL: deliveries under way go on
    await out.use_webhook("http://hooks.test/two")
    assert out.webhook is not first and out.webhook is not None
    assert out.webhook.url == "http://hooks.test/two"
    await out.use_webhook(None)
    assert out.webhook is None
    await out.aclose()


class Sockets:
    """Records which sockets a rollback closes."""

    def __init__(self) -> None:
        self.closed: list[tuple[str, str, int]] = []

    def close(self, migration: str, backend: str, code: int) -> int:
        self.closed.append((migration, backend, code))
        return 1


@pytest.mark.parametrize("close_on_rollback", [True, False])
def test_a_rollback_closes_the_migrations_sockets_on_to_when_configured(
    close_on_rollback: bool,
) -> None:
    metrics = Metrics()
    settings = make_settings(migrations=MIGRATIONS,
                             websocket={"close_on_rollback": close_on_rollback})  # fmt: skip
    proxy = create_app(settings, metrics=metrics)
    proxy.sockets = sockets = Sockets()  # type: ignore[assignment]
    out = TransitionFanout(proxy, metrics)
    out.on_sync("strategies", RolloutState(Phase.PROGRESSING, 50.0))
    _, state = rollback(None)
    out.on_sync("strategies", state)  # another worker's rollback, synced
    out.on_sync("strategies", state)  # seen again: nothing more
    assert sockets.closed == ([("strategies", "new", 1012)] if close_on_rollback else [])
