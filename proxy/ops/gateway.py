"""One Cutover process: the proxy listener's app, the admin app, the rollout, the guard,
and config reloads, assembled once from the settings."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from prometheus_client import CollectorRegistry

from cutover.config import ConfigError, Settings, load_settings
from cutover.ops.admin import create_admin_app
from cutover.ops.assembly import build_breaker, build_shadower, build_upstreams, create_app
from cutover.request.app import run_lifespan
from cutover.request.forwarder import Forwarder
from cutover.request.metrics import Metrics
from cutover.request.splitter import DEFAULT_ROUTE, Splitter
from cutover.rollout.coordination import Coordination
from cutover.rollout.guard import Guard
from cutover.rollout.guard_status import EvaluationFile, EvaluationFileError
from cutover.rollout.machine import Rollout, iso
from cutover.rollout.source_prometheus import PrometheusSource
from cutover.rollout.sources import EmbeddedSource, MemoryScraper
from cutover.rollout.state import RolloutState, StateStore, Transition
from cutover.rollout.webhook import Webhook
from cutover.types import Receive, Scope, Send

if TYPE_CHECKING:
    from cutover.ops.listener import AppListener

T = TypeVar("T")

logger = logging.getLogger("cutover.gateway")
transitions_log = logging.getLogger("cutover.rollout")

RESTART_ONLY = ("listen", "admin", "state")
WATCH_RETRY, WATCH_RETRY_MAX = 1.0, 30.0  # seconds before watching the config file again

Closer = Callable[[], Awaitable[None]]


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def route_weights(settings: Settings, weight: float) -> list[tuple[str, float]]:
    weights = [(DEFAULT_ROUTE, weight)]
    for route in settings.routes:
        if route.backend is not None:
            weights.append((route.name, 100.0 if route.backend == "new" else 0.0))
        else:
            weights.append((route.name, weight if route.weight is None else route.weight))
    return weights


def shadowing(settings: Settings) -> bool:
    return any(route.shadow is not None and route.shadow.enabled for route in settings.routes)


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
        self.config_path = Path(config_path) if config_path is not None else None
        self._config_digest = self._digest()
        self._transport = transport
        self._side_transport = side_transport
        self.clock = clock
        self.monotonic = monotonic
        self.metrics = Metrics(registry, multiprocess_dir=multiprocess_dir)
        self.coordination = Coordination(settings.state.path)
        with self.coordination.state_lock():
            store = StateStore(settings.state.path)
            self.rollout = Rollout.restore(settings, store, clock=clock, monotonic=monotonic)
        self.evaluations = EvaluationFile(settings.state.path)
        self._resume_hold()
        self.proxy = create_app(settings, transport=transport, metrics=self.metrics)
        self.proxy.splitter.set_weight(self.rollout.weight)
        self.admin = create_admin_app(self)
        self.webhook: Webhook | None = None
        self.guard: Guard | None = None
        self.ready = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._guard_task: asyncio.Task[Any] | None = None
        self._closers: list[Closer] = []
        # One reload at a time: SIGHUP and the file watcher only ask the reloader task for
        # one, and a burst of asks while a reload runs makes one more reload after it.
        self._reload_lock = asyncio.Lock()
        self._reload_wanted = asyncio.Event()
        self._reload_forced = False
        self.rollout.listeners.append(self._on_transition)
        self.rollout.sync_listeners.append(self._on_sync)
        self.metrics.set_phase(self.rollout.phase)
        self.metrics.set_weights(route_weights(settings, self.rollout.weight))

    # -- lifecycle ---------------------------------------------------------------------

    async def startup(self) -> None:
        await self.proxy.startup()
        if self.settings.guard.webhook:
            self.webhook = Webhook(self.settings.guard.webhook, transport=self._side_transport)
        self._run_guard(*self._build_guard(self.settings))
        if self.config_path is not None:
            self._tasks.append(asyncio.create_task(self._reloader()))
            self._tasks.append(asyncio.create_task(self._watch_config()))
            with contextlib.suppress(ValueError, NotImplementedError, RuntimeError):
                # Only possible in the main thread (not when tests run the server in one).
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request_reload)
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        if self.config_path is not None:
            with contextlib.suppress(ValueError, NotImplementedError, RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        async with self._reload_lock:  # a reload under way finishes first
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stop_guard()
        if self.webhook is not None:
            await self.webhook.aclose()
        await self.proxy.shutdown()
        self.coordination.resign()  # another worker may lead the guard now

    def _build_guard(self, settings: Settings) -> tuple[Guard, list[Closer]]:
        """The guard for ``settings`` and what to close when it stops; not running yet."""
        config = settings.guard
        urls = {
            name: backend.metrics_url
            for name, backend in (
                ("legacy", settings.backends.legacy),
                ("new", settings.backends.new),
            )
            if backend.metrics_url
        }
        ca_files = {
            "legacy": settings.backends.legacy.ca_file,
            "new": settings.backends.new.ca_file,
        }
        scraper = (
            MemoryScraper(urls, self.metrics, transport=self._side_transport, ca_files=ca_files)
            if urls
            else None
        )
        closers: list[Closer]
        if config.source == "prometheus":
            source = PrometheusSource(config, transport=self._side_transport, clock=self.clock)
            observe, closers = source.observe, [source.aclose]
        else:
            observe, closers = EmbeddedSource(self.metrics, config.window).observe, []
        if scraper is not None:
            closers.append(scraper.aclose)
        guard = Guard(
            config,
            self.rollout,
            self.metrics,
            observe,
            scraper=scraper,
            memory_from_scrape=config.source == "embedded",
            shadow=settings.shadow if shadowing(settings) else None,
            coordination=self.coordination,
            shared=self.evaluations,
            monotonic=self.monotonic,
        )
        return guard, closers

    def _run_guard(self, guard: Guard, closers: list[Closer]) -> None:
        assert self._guard_task is None, "one guard loop at a time"
        self.guard = guard
        self._closers = closers
        self._guard_task = asyncio.create_task(guard.run())

    async def _stop_guard(self) -> None:
        if self._guard_task is not None:
            self._guard_task.cancel()
            await asyncio.gather(self._guard_task, return_exceptions=True)
            self._guard_task = None
        closers, self._closers = self._closers, []
        for close in closers:
            try:
                await close()
            except Exception:
                logger.exception("closing the guard's metrics source failed")

    def _resume_hold(self) -> None:
        """At start-up: the last evaluation saved (by this process before a restart, or by
        the leading worker) carries on the stage's hold, without the time nobody watched."""
        try:
            _, shared = self.evaluations.read_if_changed(None)
        except (OSError, EvaluationFileError) as exc:
            logger.warning("the guard's last evaluation is not resumed: %s", exc)
            return
        if shared is not None:
            self.rollout.adopt(shared, fresh=0.0)

    def status(self) -> dict[str, Any]:
        """The admin API's status document: the rollout, plus the circuit breaker."""
        status = self.rollout.status()
        breaker = self.proxy.breaker
        status["breaker"] = None if breaker is None else breaker.status()
        return status

    async def current_status(self) -> dict[str, Any]:
        """``status()``, with the guard's latest evaluation even when another worker made it."""
        if self.guard is not None:
            await self.guard.follow()
        return self.status()

    # -- transitions -------------------------------------------------------------------

    async def act(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run an operator action on the latest saved state, under the state lock (another
        worker process may have changed it since this one last looked). The action saves
        its transition before applying it: SaveError means nothing changed."""
        async with self.coordination.locked():
            await self.rollout.sync()
            return await action()

    def _on_sync(self, state: RolloutState) -> None:
        self.proxy.splitter.set_weight(state.weight)
        self.metrics.set_phase(state.phase)
        self.metrics.set_weights(route_weights(self.settings, state.weight))

    def _on_transition(self, transition: Transition, state: RolloutState) -> None:
        self.proxy.splitter.set_weight(state.weight)
        self.metrics.set_phase(state.phase)
        self.metrics.set_weights(route_weights(self.settings, state.weight))
        if transition.kind == "promote":
            self.metrics.promotions.inc()
        elif transition.kind == "rollback":
            reason = transition.failure["check"] if transition.failure else "operator"
            self.metrics.rollbacks.labels(reason).inc()
        event = {"event": "rollout_transition", **vars(transition), "at": iso(transition.at)}
        transitions_log.info(json.dumps(event, default=str))
        if self.webhook is not None:
            self.webhook.notify(event)

    # -- config reload -----------------------------------------------------------------

    def _digest(self) -> bytes | None:
        if self.config_path is None:
            return None
        try:
            return hashlib.sha256(self.config_path.read_bytes()).digest()
        except OSError:
            return None

    def request_reload(self, *, changed_only: bool = False) -> None:
        """Ask for a reload (SIGHUP; the file watcher with ``changed_only``: skipped when
        the file's bytes are the ones last read); returns at once."""
        self._reload_forced = self._reload_forced or not changed_only
        self._reload_wanted.set()

    async def _reloader(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            forced, self._reload_forced = self._reload_forced, False
            await self.reload(changed_only=not forced)

    async def _watch_config(self) -> None:
        """Ask for a reload whenever the config file changes. The watch itself failing
        (its directory gone, say) is logged, and watching starts again."""
        from watchfiles import awatch

        assert self.config_path is not None
        path = self.config_path.resolve()
        retry = WATCH_RETRY
        while True:
            try:
                async for _ in awatch(
                    path.parent,
                    debounce=200,
                    step=50,
                    watch_filter=lambda _, changed: Path(changed).name == path.name,
                ):
                    retry = WATCH_RETRY
                    self.request_reload(changed_only=True)
            except Exception as exc:
                logger.error(
                    "watching %s failed (%s); watching again in %gs", path, describe(exc), retry
                )
            await asyncio.sleep(retry)
            retry = min(retry * 2, WATCH_RETRY_MAX)

    async def reload(self, *, changed_only: bool = False) -> bool:
        """Re-read the config file and apply it, one reload at a time. When the file is
        invalid or applying it fails, the running config stays, and the failure is logged
        with its reason and counted; returns whether the file's config is the running one."""
        assert self.config_path is not None
        async with self._reload_lock:
            digest = await asyncio.to_thread(self._digest)
            if changed_only and (digest is None or digest == self._config_digest):
                return True
            self._config_digest = digest
            try:
                settings = await asyncio.to_thread(load_settings, self.config_path)
                await self.apply(settings)
            except ConfigError as exc:
                self._reload_failed(exc.problems)
                return False
            except Exception as exc:
                self._reload_failed([describe(exc)], exc)
                return False
        logger.info("config reloaded from %s", self.config_path)
        return True

    def _reload_failed(self, reasons: list[str], exc: Exception | None = None) -> None:
        self.metrics.config_reload_failures.inc()
        for reason in reasons:
            logger.error(
                "config reload failed, keeping the running config: %s", reason, exc_info=exc
            )

    async def apply(self, settings: Settings) -> None:
        """Switch to ``settings``. Every new part is built first, so a failure (raised)
        leaves the running config as it was; then the switch, then the old parts retire."""
        old = self.settings
        for key in RESTART_ONLY:
            if getattr(old, key) != getattr(settings, key):
                logger.warning("config: %s changed; it takes effect after a restart", key)
        if old.split.weight != settings.split.weight:
            logger.warning(
                "config: split.weight changed; the live weight is the rollout's (%g%%), "
                "use `cutover set-weight` to change it", self.rollout.weight,
            )  # fmt: skip
        keep = ("listen", "admin", "state", "admin_token")
        settings = settings.model_copy(update={key: getattr(old, key) for key in keep})

        proxy = self.proxy
        old_upstreams, old_shadower = proxy.upstreams, proxy.shadower
        upstreams = old_upstreams
        shadower = old_shadower
        restart_guard = (
            settings.guard != old.guard
            or settings.backends != old.backends
            or settings.shadow != old.shadow
            or shadowing(settings) != shadowing(old)
        )
        guard: tuple[Guard, list[Closer]] | None = None
        try:
            if settings.backends != old.backends or settings.timeouts != old.timeouts:
                upstreams = build_upstreams(settings, self._transport)
                for upstream in upstreams.values():
                    await upstream.start()
            if restart_guard:
                guard = self._build_guard(settings)
            if (
                shadower is None
                or settings.shadow != old.shadow
                or shadowing(settings) != shadowing(old)
            ):
                shadower = build_shadower(settings, upstreams, self.metrics)  # last: opens a file
        except BaseException:
            # Nothing was switched: close what was built for the new config.
            if upstreams is not old_upstreams:
                for upstream in upstreams.values():
                    await upstream.aclose()
            for close in guard[1] if guard is not None else []:
                await close()
            raise
        splitter = Splitter(settings)
        splitter.set_weight(self.rollout.weight)
        breaker = proxy.breaker
        if settings.breaker != old.breaker:
            breaker = build_breaker(settings, self.metrics)
        forwarder = Forwarder(settings, upstreams, self.metrics, shadower, breaker)
        # No await between these: a request sees either the old or the new parts.
        if shadower is not None:
            shadower.upstreams = upstreams
        proxy.settings, proxy.upstreams, proxy.splitter, proxy.forwarder = (
            settings, upstreams, splitter, forwarder,
        )  # fmt: skip
        proxy.shadower, proxy.breaker = shadower, breaker
        self.settings = settings
        self.rollout.config = settings.rollout
        self.rollout.failures_to_rollback = settings.guard.failures_to_rollback
        self.rollout.manual_weight = settings.split.weight
        self.metrics.set_weights(route_weights(settings, self.rollout.weight))

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
            await self._stop_guard()
            if self.webhook is not None and settings.guard.webhook != old.guard.webhook:
                await self.webhook.aclose()
                self.webhook = None
            if settings.guard.webhook and self.webhook is None:
                self.webhook = Webhook(settings.guard.webhook, transport=self._side_transport)
            self._run_guard(*guard)


class Listeners:
    """The ASGI app uvicorn runs on the proxy socket: every request on it goes to the
    proxy. Its lifespan starts and stops the gateway and the admin API, which is served on
    a socket of its own (``listener.AppListener``): no request accepted on the proxy
    socket can reach the admin app, whatever address or port it names."""

    def __init__(self, gateway: Gateway, admin: AppListener | None = None) -> None:
        self.gateway = gateway
        self.admin = admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send, self.startup, self.shutdown)
            return
        await self.gateway.proxy(scope, receive, send)

    async def startup(self) -> None:
        await self.gateway.startup()
        if self.admin is not None:
            await self.admin.start()

    async def shutdown(self) -> None:
        if self.admin is not None:
            await self.admin.stop(self.gateway.settings.shutdown.grace)
        await self.gateway.shutdown()
