"""Each rollout transition applied and announced (``TransitionFanout``): the splitter's
weight, the gauges, the counters, the log line and the webhook; another worker's state
applied without an announcement."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cutover.ops.assembly import create_app
from cutover.ops.fanout import TransitionFanout, route_weights
from cutover.request.metrics import Metrics
from cutover.rollout.state import RolloutState, Transition
from cutover.vocabulary import Actor, Phase, TransitionKind
from tests.conftest import make_settings

ROUTES = [
    {"prefix": "/pinned/", "backend": "new"},
    {"prefix": "/legacy/", "backend": "legacy"},
    {"prefix": "/slow/", "weight": 5},
    {"prefix": "/api/"},
]


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
    metrics = Metrics()
    proxy = create_app(make_settings(routes=ROUTES), metrics=metrics)
    return TransitionFanout(proxy, metrics), metrics


def rollback(failure: dict[str, Any] | None) -> tuple[Transition, RolloutState]:
    actor = Actor.GUARD if failure else Actor.OPERATOR
    made = Transition(1763780100.5, Phase.PROGRESSING, Phase.ROLLED_BACK, 50.0, 0.0, "why",
                      actor, TransitionKind.ROLLBACK, failure)  # fmt: skip
    return made, RolloutState(Phase.ROLLED_BACK, 0.0, history=[made])


def test_route_weights() -> None:
    names = [route.name for route in make_settings(routes=ROUTES).routes]
    assert route_weights(make_settings(routes=ROUTES), 30) == [
        ("default", 30), (names[0], 100), (names[1], 0), (names[2], 5), (names[3], 30),
    ]  # fmt: skip


def test_a_transition_reaches_the_splitter_gauges_counters_log_and_webhook(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="cutover.rollout")
    out, metrics = fanout()
    webhook = Webhook("http://hooks.test/cutover")
    out.webhook = webhook  # type: ignore[assignment]
    made, state = rollback({"check": "error_rate"})
    out.on_transition(made, state)
    registry = metrics.registry
    assert out.proxy.splitter.weight == 0
    assert registry.get_sample_value("cutover_rollout_phase", {"phase": "rolled_back"}) == 1
    assert registry.get_sample_value("cutover_split_weight", {"route": "default"}) == 0
    assert registry.get_sample_value("cutover_rollbacks_total", {"reason": "error_rate"}) == 1
    event = {
        "event": "rollout_transition", "at": "2025-11-22T02:55:00.500Z",
        "from_phase": "progressing", "to_phase": "rolled_back", "from_weight": 50.0,
        "to_weight": 0.0, "reason": "why", "actor": "guard", "kind": "rollback",
        "failure": {"check": "error_rate"},
    }  # fmt: skip
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "cutover.rollout"]
    assert logged == [event]
    assert webhook.sent == [event]


def test_an_operator_rollback_and_a_promotion_are_counted() -> None:
    out, metrics = fanout()
    out.on_transition(*rollback(None))
    assert metrics.registry.get_sample_value("cutover_rollbacks_total", {"reason": "operator"}) == 1
    made = Transition(1.0, Phase.PROGRESSING, Phase.PROGRESSING, 10.0, 50.0, "held",
                      Actor.GUARD, TransitionKind.PROMOTE)  # fmt: skip
    out.on_transition(made, RolloutState(Phase.PROGRESSING, 50.0))
    assert metrics.registry.get_sample_value("cutover_promotions_total") == 1
    assert out.proxy.splitter.weight == 50


def test_another_workers_state_is_applied_not_announced(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="cutover.rollout")
    out, metrics = fanout()
    webhook = Webhook("http://hooks.test/cutover")
    out.webhook = webhook  # type: ignore[assignment]
    out.on_sync(RolloutState(Phase.PAUSED, 30.0))
    assert out.proxy.splitter.weight == 30
    assert metrics.registry.get_sample_value("cutover_rollout_phase", {"phase": "paused"}) == 1
    assert metrics.registry.get_sample_value("cutover_split_weight", {"route": "default"}) == 30
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
