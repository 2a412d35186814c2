"""One Cutover process, assembled once from the settings: the proxy listener's app, the
admin app, the rollout and its control, the guard, the transition fan-out and the config
reloader; started and stopped as one, and switched to new settings by a reload."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from cutover.config import Settings
from cutover.console.app import Console
from cutover.ops.admin import create_admin_app
from cutover.ops.assembly import build_breakers, build_shadower, build_upstreams, create_app
from cutover.ops.fanout import TransitionFanout
from cutover.ops.fleet import open_fleet
from cutover.ops.guard_runner import BuiltGuard, GuardRunner, build_judges
from cutover.ops.lifecycle_status import deprecation_status
from cutover.ops.reload import Reloader, describe, reloadable
from cutover.ops.state_backend import open_state
from cutover.ops.usage import UsageService
from cutover.request.clients import ClientIdentifier
from cutover.request.fast_protocol import configure
from cutover.request.forwarder import Forwarder
from cutover.request.lifecycle import build_gates
from cutover.request.metrics import Metrics
from cutover.request.splitter import Splitter
from cutover.request.ws_forwarder import WebSocketForwarder
from cutover.rollout.control import Control
from cutover.rollout.guard_status import EvaluationFileError
from cutover.rollout.registry import Migrations
from cutover.usage.store import UsageStoreError

logger = logging.getLogger("cutover.gateway")


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        config_path: str | Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        side_transport: httpx.AsyncBaseTransport | None = None,
        registry: CollectorRegistry | None = None,
        multiprocess_dir: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build everything; raises StateError if the saved rollout state is unusable.
        ``transport`` replaces the upstream client, ``side_transport`` the client used for
        scrapes, Prometheus queries and webhooks (tests pass respx to both)."""
        self.settings = settings
        self._transport = transport
        self._clock = clock
        self.metrics = Metrics(registry, multiprocess_dir=multiprocess_dir)
        # Without a config file there is nothing to reload.
        self.reloader = (
            None
            if config_path is None
            else Reloader(Path(config_path), self.apply, self.metrics.config_reload_failures)
        )
        self.state = open_state(settings, self.metrics)
        self.fleet = open_fleet(settings, self.state)
        self.coordination = self.state.coordination
        with self.coordination.state_lock():
            self.migrations = Migrations.restore(
                settings, self.state.book, host=self.state.fleet_host,
                clock=clock, monotonic=monotonic,
            )  # fmt: skip
        self.evaluations = self.state.evaluations
        self.metrics.state_store_up.set(1 if self.migrations.book.available else 0)
        self._tasks: list[asyncio.Task[Any]] = []
        self._resume_hold()
        self.proxy = create_app(settings, transport=transport, metrics=self.metrics, clock=clock)
        self.control = Control(self.migrations, self.coordination, describe=self._describe)
        assert self.proxy.recorder is not None  # create_app builds one
        self.usage = UsageService(lambda: self.settings, self.proxy.recorder, clock=clock)
        # How many clients called a migration's from in the last 7 days (None: not counted).
        # Called from the admin API on the event loop: it answers from memory.
        self.clients_7d: Callable[[str], int | None] = self.usage.clients_7d
        # The console signs in with the admin token: without one there is none.
        self.console = None if settings.admin_token is None else Console(
            self.control, self.metrics, lambda: self.settings, admin_token=settings.admin_token,
            view_token=settings.view_token, usage=self.usage, fleet=self.fleet.view,
        )  # fmt: skip
        self.admin = create_admin_app(
            self.control, self.metrics, settings.admin_token, fleet=self.fleet.view,
            usage=self.usage, console=self.console,
        )  # fmt: skip
        self.guards = GuardRunner(
            self.migrations, self.metrics, self.coordination, self.evaluations,
            side_transport=side_transport, redis=self.state.redis, host=self.state.host,
            clock=clock, monotonic=monotonic,
        )  # fmt: skip
        self.fanout = TransitionFanout(self.proxy, self.metrics, side_transport=side_transport)
        self.migrations.listeners.append(self.fanout.on_transition)
        self.migrations.sync_listeners.append(self.fanout.on_sync)
        self._shown: set[str] = set()
        self._show_migrations()

    def _show_migrations(self) -> None:
        """Every migration's weight into the splitter, its phase and weight into the gauges."""
        self.metrics.migration_info.clear()  # a reload may have removed or changed some
        configured = {config.name for config in self.settings.migration_list}
        for name in self._shown - configured:
            self.metrics.forget_migration(name)
        self._shown = configured
        for config in self.settings.migration_list:
            self.metrics.add_migration(config.name, config.source, config.target)
        for rollout in self.migrations:
            self.fanout.on_sync(rollout.name, rollout.state)

    def _describe(self, name: str) -> dict[str, Any]:
        """A migration's configured part of its document (a reload may have changed it)."""
        config = self.settings.migration(name)
        if config is None:
            return {}
        breaker = self.proxy.breakers.get(config.target)  # a reload may have replaced it
        return {
            "match": config.match.model_dump(),
            "from": config.source,
            "to": config.target,
            "breaker": None if breaker is None else breaker.status(),
            "deprecation": deprecation_status(
                config.deprecation or None, self.proxy.gates.get(name), self._clock(),
                self.clients_7d(name) if config.deprecation else None,
            ),
        }  # fmt: skip

    def _resume_hold(self) -> None:
        """At start-up: the last evaluations saved (by this process before a restart, or by
        the leading worker) carry on each stage's hold, without the time nobody watched."""
        try:
            _, shared = self.evaluations.read_if_changed(None)
        except (OSError, EvaluationFileError) as exc:
            logger.warning("the guard's last evaluation is not resumed: %s", exc)
            return
        for rollout in self.migrations:
            evaluation = (shared or {}).get(rollout.name)
            if evaluation is not None:
                rollout.adopt(evaluation, fresh=0.0)

    # -- lifecycle ---------------------------------------------------------------------

    async def startup(self) -> None:
        await self.proxy.startup()
        await self.usage.start()
        await self.fanout.use_webhook(self.settings.guard.webhook)
        self._follow_the_fleet()
        self._run_guard(self.guards.build(self.settings))
        if self.reloader is not None:
            self.reloader.start()
            if self.proxy.access_log is not None:  # logrotate's postrotate sends SIGHUP
                self.reloader.on_hangup.append(self.proxy.access_log.reopen)
        if self.console is not None:
            self.console.start()
        self.control.ready = True

    async def close_streams(self) -> None:
        """The console's event streams end, so the admin listener's drain need not wait."""
        if self.console is not None:
            await self.console.close_streams()

    async def shutdown(self) -> None:
        self.control.ready = False
        if self.reloader is not None:
            await self.reloader.stop()
        await self.guards.stop()
        if self.console is not None:
            await self.console.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fanout.aclose()
        await self.proxy.shutdown()
        await self.usage.stop()  # after the proxy: the last requests' counts are written
        await self.coordination.release()  # another worker or host may lead the guard now
        await self.fleet.leave()
        await self.state.aclose()

    def _follow_the_fleet(self) -> None:
        """With the redis backend: follow the fleet's state, and keep the guard's lease."""
        if self.state.redis is None:
            return
        from cutover.rollout.follower import StateFollower
        from cutover.rollout.redis_keys import RedisKeys

        config = self.settings.state
        follower = StateFollower(
            self.migrations, self.coordination, self.state.redis, RedisKeys(config.key_prefix),
            poll=config.poll, on_store=lambda up: self.metrics.state_store_up.set(1 if up else 0),
        )  # fmt: skip
        self._tasks.append(asyncio.create_task(follower.run()))
        renew = self.coordination.renew_forever(config.lease / 3)  # type: ignore[attr-defined]
        self._tasks.append(asyncio.create_task(renew))
        if self.fleet.registry is not None:
            self._tasks.append(asyncio.create_task(self.fleet.registry.run()))

    def _run_guard(self, built: BuiltGuard) -> None:
        self.control.guard = self.guards.start(built)

    # -- a reload ----------------------------------------------------------------------

    async def apply(self, settings: Settings) -> None:
        """Switch to ``settings``. Every new part is built first, so a failure (raised)
        leaves the running config as it was; then the switch, then the old parts retire."""
        old = self.settings
        settings = reloadable(old, settings)

        proxy = self.proxy
        old_upstreams, old_shadower = proxy.upstreams, proxy.shadower
        upstreams = old_upstreams
        shadower = old_shadower
        restart_guard = (
            settings.guard != old.guard
            or settings.backends != old.backends
            or settings.shadow != old.shadow
        )
        guard: BuiltGuard | None = None
        try:
            if settings.backends != old.backends or settings.timeouts != old.timeouts:
                upstreams = build_upstreams(settings, self._transport)
                for upstream in upstreams.values():
                    await upstream.start()
            if (
                shadower is None
                or settings.shadow != old.shadow
                or settings.shadowing != old.shadowing
            ):
                shadower = build_shadower(settings, upstreams, self.metrics)  # opens a file
            breakers = proxy.breakers
            targets = [m.target for m in settings.migration_list]
            if settings.breaker != old.breaker or set(targets) != set(breakers):
                breakers = build_breakers(settings, self.metrics)
            forwarder = Forwarder(settings, upstreams, self.metrics, shadower, breakers)
            # A thread: an https:// backend's TLS context loads a CA bundle (which may fail).
            websockets = await asyncio.to_thread(
                WebSocketForwarder, settings, self.metrics, breakers, proxy.sockets
            )
            # After what may fail to open: the migrations are not put back if a later step fails.
            if settings.migration_list != old.migration_list:
                async with self.coordination.locked():
                    await self.migrations.reconfigure(settings)
            if restart_guard:
                # A thread: its HTTP clients load CA bundles (tens of ms each).
                guard = await asyncio.to_thread(self.guards.build, settings)
        except BaseException:
            # Nothing was switched: close what was built for the new config.
            if upstreams is not old_upstreams:
                for upstream in upstreams.values():
                    await upstream.aclose()
            if shadower is not None and shadower is not old_shadower:
                await shadower.aclose()
            if guard is not None:
                await guard.discard()
            raise
        splitter = Splitter(settings)
        for rollout in self.migrations:
            splitter.set_weight(rollout.name, rollout.weight)
        # No await between these: a request sees either the old or the new parts.
        if shadower is not None:
            shadower.upstreams = upstreams
        proxy.settings, proxy.upstreams, proxy.splitter, proxy.forwarder = (
            settings, upstreams, splitter, forwarder,
        )  # fmt: skip
        proxy.websockets = websockets  # the open sockets stay as they are
        proxy.shadower, proxy.breakers, proxy.gates = shadower, breakers, build_gates(settings)
        proxy.identifier = ClientIdentifier(settings.clients)
        configure(settings.limits)  # the request head's bounds, the clients' deadlines
        try:
            await self.usage.start()  # a migration may have a deprecation now
        except UsageStoreError as exc:
            logger.error("the usage report cannot be written: %s", exc)
        self.settings = settings
        self._show_migrations()
        if guard is None and self.guards.guard is not None:
            # The same loop and window go on, judging the migrations as now configured.
            self.guards.guard.judges = build_judges(settings, self.migrations)

        if upstreams is not old_upstreams:
            # Exchanges in flight (an event stream, a long download) keep their connection
            # to the end; the old clients keep no connection for reuse.
            for upstream in old_upstreams.values():
                upstream.retire()
        if old_shadower is not None and old_shadower is not shadower:
            try:
                await old_shadower.aclose()
            except Exception as exc:
                logger.error("closing the previous shadow comparer failed: %s", describe(exc))
        if guard is not None:
            await self.guards.stop()
            await self.fanout.use_webhook(settings.guard.webhook)
            self._run_guard(guard)
