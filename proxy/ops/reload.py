"""Config reloads: SIGHUP and the config file's watcher ask for one, one runs at a time
(a burst of asks while one runs makes one more after it), and one that fails keeps the
running config, logged with its reason and counted."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from cutover.config import ConfigError, Settings, load_settings

# The gateway's logger, as before reloads had a module of their own.
logger = logging.getLogger("cutover.gateway")

# Only a restart changes these; a reload keeps the running ones.
RESTART_ONLY = ("listen", "admin", "state", "usage", "access_log")
KEPT = (*RESTART_ONLY, "admin_token", "view_token")
WATCH_RETRY, WATCH_RETRY_MAX = 1.0, 30.0  # seconds before watching the config file again

Apply = Callable[[Settings], Awaitable[None]]


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def reloadable(old: Settings, new: Settings) -> Settings:
    """``new`` with what only a restart changes kept from ``old``; a warning for each such
    change, and for an edited starting weight (the live weight is the rollout's)."""
    for key in RESTART_ONLY:
        if getattr(old, key) != getattr(new, key):
            logger.warning("config: %s changed; it takes effect after a restart", key)
    before = {m.name: m.weight for m in old.migration_list}
    for migration in new.migration_list:
        if migration.name in before and before[migration.name] != migration.weight:
            where = "split.weight" if new.migrations is None else f"{migration.name}'s weight"
            logger.warning(
                "config: %s changed; the live weight is the rollout's, "
                "use `cutover set-weight %s N` to change it", where, migration.name,
            )  # fmt: skip
    return new.model_copy(update={key: getattr(old, key) for key in KEPT})


class Reloader:
    def __init__(self, path: Path, apply: Apply, failures: Counter) -> None:
        """``apply`` switches the process to the settings read (raising leaves the running
        ones); ``failures`` counts the reloads that failed."""
        self.path = path
        self.apply = apply
        self.failures = failures
        self._digest = self._read_digest()
        self._tasks: list[asyncio.Task[Any]] = []
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()
        self._forced = False
        self.on_hangup: list[Callable[[], None]] = []  # also asked on SIGHUP (certificates)

    def start(self) -> None:
        """Run the reloader and the file watcher, and reload on SIGHUP."""
        self._tasks.append(asyncio.create_task(self._reloader()))
        self._tasks.append(asyncio.create_task(self._watch()))
        with contextlib.suppress(ValueError, NotImplementedError, RuntimeError):
            # Only possible in the main thread (not when tests run the server in one).
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hangup)

    async def stop(self) -> None:
        """Stop both; a reload under way finishes first."""
        with contextlib.suppress(ValueError, NotImplementedError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        async with self._lock:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _read_digest(self) -> bytes | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return None

    def _hangup(self) -> None:
        self.request()
        for hook in self.on_hangup:
            hook()

    def request(self, *, changed_only: bool = False) -> None:
        """Ask for a reload (SIGHUP; the file watcher with ``changed_only``: skipped when
        the file's bytes are the ones last read); returns at once."""
        self._forced = self._forced or not changed_only
        self._wanted.set()

    async def _reloader(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            forced, self._forced = self._forced, False
            await self.reload(changed_only=not forced)

    async def _watch(self) -> None:
        """Ask for a reload whenever the config file changes. The watch itself failing
        (its directory gone, say) is logged, and watching starts again."""
        from watchfiles import awatch

        path = self.path.resolve()
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
                    self.request(changed_only=True)
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
        async with self._lock:
            digest = await asyncio.to_thread(self._read_digest)
            if changed_only and (digest is None or digest == self._digest):
                return True
            self._digest = digest
            try:
                settings = await asyncio.to_thread(load_settings, self.path)
                await self.apply(settings)
            except ConfigError as exc:
                self._failed(exc.problems)
                return False
            except Exception as exc:
                self._failed([describe(exc)], exc)
                return False
        logger.info("config reloaded from %s", self.path)
        return True

    def _failed(self, reasons: list[str], exc: Exception | None = None) -> None:
        for reason in reasons:
            logger.error(
                "config reload failed, keeping the running config: %s", reason, exc_info=exc
            )
        # Counted once logged: whoever watches the count finds the reasons already there.
        self.failures.inc()
