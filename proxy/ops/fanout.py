"""Each rollout transition, applied and announced: the splitter's weight, the phase and
weight gauges, the promotion and rollback counters, one JSON log line, the webhook. A
state another worker saved (``Rollout.sync``) is applied, not announced: that worker did."""

from __future__ import annotations

import json
import logging

import httpx

from cutover.config import Settings
from cutover.request.app import CutoverApp
from cutover.request.metrics import Metrics
from cutover.request.splitter import DEFAULT_ROUTE
from cutover.rollout.control import iso
from cutover.rollout.state import RolloutState, Transition
from cutover.rollout.webhook import Webhook
from cutover.vocabulary import Actor, TransitionKind

transitions_log = logging.getLogger("cutover.rollout")


def route_weights(settings: Settings, weight: float) -> list[tuple[str, float]]:
    """Each route's share of new at the rollout's ``weight``: a route pinned to a backend
    has 0 or 100, one with a weight of its own has that."""
    weights = [(DEFAULT_ROUTE, weight)]
    for route in settings.routes:
        if route.backend is not None:
            weights.append((route.name, 100.0 if route.backend == "new" else 0.0))
        else:
            weights.append((route.name, weight if route.weight is None else route.weight))
    return weights


class TransitionFanout:
    def __init__(
        self,
        proxy: CutoverApp,
        metrics: Metrics,
        *,
        side_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``proxy``: whose splitter takes the weight (a reload gives it a new one, and new
        settings); ``side_transport`` replaces the webhook's client (tests)."""
        self.proxy = proxy
        self.metrics = metrics
        self.side_transport = side_transport
        self.webhook: Webhook | None = None

    def on_sync(self, state: RolloutState) -> None:
        self.proxy.splitter.set_weight(state.weight)
        self.metrics.set_phase(state.phase)
        self.metrics.set_weights(route_weights(self.proxy.settings, state.weight))

    def on_transition(self, transition: Transition, state: RolloutState) -> None:
        self.on_sync(state)
        if transition.kind == TransitionKind.PROMOTE:
            self.metrics.promotions.inc()
        elif transition.kind == TransitionKind.ROLLBACK:
            reason = transition.failure["check"] if transition.failure else Actor.OPERATOR
            self.metrics.rollbacks.labels(reason).inc()
        event = {"event": "rollout_transition", **vars(transition), "at": iso(transition.at)}
        transitions_log.info(json.dumps(event, default=str))
        if self.webhook is not None:
            self.webhook.notify(event)

    async def use_webhook(self, url: str | None) -> None:
        """Deliver to ``url`` from now on (None: to no webhook); one to another URL is
        closed first, one to the same URL goes on as it is."""
        if self.webhook is not None and self.webhook.url != url:
            await self.webhook.aclose()
            self.webhook = None
        if url and self.webhook is None:
            self.webhook = Webhook(url, transport=self.side_transport)

    async def aclose(self) -> None:
        if self.webhook is not None:
            await self.webhook.aclose()
