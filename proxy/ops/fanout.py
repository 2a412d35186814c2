"""Each migration's rollout transitions, applied and announced: the splitter's weight, the
phase and weight gauges, the promotion and rollback counters, one JSON log line, the webhook. A
state another worker saved (``Rollout.sync``) is applied, not announced: that worker did."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx

from cutover.request.app import CutoverApp
from cutover.request.metrics import Metrics
from cutover.request.ws_forwarder import SERVICE_RESTART
from cutover.rollout.control import iso
from cutover.rollout.state import RolloutState, Transition
from cutover.rollout.webhook import Webhook
from cutover.vocabulary import Actor, Phase, TransitionKind

transitions_log = logging.getLogger("cutover.rollout")


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
        self._phases: dict[str, Phase] = {}

    def on_sync(self, migration: str, state: RolloutState) -> None:
        # A rollback here or in another worker or host (synced): either reaches this one.
        if state.phase == Phase.ROLLED_BACK and self._phases.get(migration) != Phase.ROLLED_BACK:
            self._close_sockets(migration)
        self._phases[migration] = state.phase
        self.proxy.splitter.set_weight(migration, state.weight)
        self.proxy.splitter.set_phase(migration, state.phase)
        self.metrics.set_phase(migration, state.phase)
        self.metrics.set_weight(migration, state.weight)

    def on_transition(self, migration: str, transition: Transition, state: RolloutState) -> None:
        self.on_sync(migration, state)
        if transition.kind == TransitionKind.PROMOTE:
            self.metrics.promotions.labels(migration).inc()
        elif transition.kind == TransitionKind.ROLLBACK:
            reason = transition.failure["check"] if transition.failure else Actor.OPERATOR
            self.metrics.rollbacks.labels(migration, reason).inc()
        event = {
            "event": "rollout_transition",
            "migration": migration,
            **transition.to_json(),
            "at": iso(transition.at),
        }
        transitions_log.info(json.dumps(event, default=str))
        if self.webhook is not None:
            self.webhook.notify(event)

    def _close_sockets(self, migration: str) -> None:
        """With ``websocket.close_on_rollback``: the migration's sockets on its to get 1012
        (service restart), so their clients reconnect, to its from."""
        config = self.proxy.settings.migration(migration)
        if config is None or not self.proxy.settings.websocket.close_on_rollback:
            return
        closed = self.proxy.sockets.close(migration, config.target, SERVICE_RESTART)
        if closed:
            transitions_log.info("%s rolled back: %d WebSocket(s) on %s closed with %d",
                                 migration, closed, config.target, SERVICE_RESTART)  # fmt: skip

    async def use_webhook(self, url: str | None) -> None:
        """Deliver to ``url`` from now on (None: to no webhook); one to another URL is
        closed first, one to the same URL goes on as it is."""
        if self.webhook is not None and self.webhook.url != url:
            await self.webhook.aclose()
            self.webhook = None
        if url and self.webhook is None:
            # A thread: its HTTP client loads a CA bundle (tens of ms).
            self.webhook = await asyncio.to_thread(Webhook, url, transport=self.side_transport)

    async def aclose(self) -> None:
        if self.webhook is not None:
            await self.webhook.aclose()
