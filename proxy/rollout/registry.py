"""Every configured migration's rollout, in config order, over one state book: restored at
start-up, kept in step with the state file, and reconfigured by a reload (a migration the
reload adds starts at its first stage; one it removes stops being judged, and its state and
history stay in the file)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

from cutover.config import MigrationConfig, Settings
from cutover.rollout import transitions
from cutover.rollout.book import Book, StateBook
from cutover.rollout.machine import Clock, Listener, Rollout, SyncListener
from cutover.rollout.state import RolloutState, StateStore
from cutover.rollout.store_errors import StateConflict


class UnknownMigration(Exception):
    """No migration of that name is configured."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) or "none"
        super().__init__(f"no migration named {name!r} (configured: {listed})")
        self.name = name


class Migrations:
    def __init__(
        self,
        book: Book,
        *,
        host: str | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        """``host``: stamped on every transition (a fleet on Redis; None: one host)."""
        self.book = book
        self.host = host
        self.clock = clock
        self.monotonic = monotonic
        self.rollouts: dict[str, Rollout] = {}
        self.listeners: list[Listener] = []
        self.sync_listeners: list[SyncListener] = []

    @classmethod
    def restore(
        cls,
        settings: Settings,
        store: StateStore | Book,
        *,
        host: str | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> Migrations:
        """Each migration's saved state, or a new one from its config (saved at once, all in
        one write); StateError if the state is unusable, SaveError if new ones cannot be
        written. ``store``: the state file, or a book over another store (Redis). Blocking:
        for start-up, before the proxy serves."""
        book = StateBook(store) if isinstance(store, StateStore) else store
        book.load()
        try:
            return cls._restore(settings, book, host=host, clock=clock, monotonic=monotonic)
        except StateConflict:  # another host started a migration first: take its state
            book.load()
            return cls._restore(settings, book, host=host, clock=clock, monotonic=monotonic)

    @classmethod
    def _restore(
        cls, settings: Settings, book: Book, *, host: str | None, clock: Clock, monotonic: Clock
    ) -> Migrations:
        migrations = cls(book, host=host, clock=clock, monotonic=monotonic)
        starts = {}
        for config in settings.migration_list:
            saved = book.states.get(config.name)
            rollout = migrations._rollout(settings, config, saved)
            if saved is None:
                starts[config.name] = transitions.start(rollout.state, clock())
                starts[config.name][0].host = host
        if starts:
            book.save_blocking({name: state for name, (_, state) in starts.items()})
            for name, (made, state) in starts.items():
                migrations.rollouts[name].commit(made, state)
        return migrations

    def _rollout(
        self, settings: Settings, config: MigrationConfig, saved: RolloutState | None
    ) -> Rollout:
        rollout = Rollout(
            config.name,
            config.rollout,
            saved or transitions.initial_state(config),
            self.book,
            failures_to_rollback=config.guard.over(settings.guard).failures_to_rollback,
            manual_weight=config.weight,
            clock=self.clock,
            monotonic=self.monotonic,
        )
        rollout.host = self.host
        rollout.listeners = self.listeners
        rollout.sync_listeners = self.sync_listeners
        self.rollouts[config.name] = rollout
        return rollout

    # -- reading -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Rollout]:
        return iter(self.rollouts.values())

    def __len__(self) -> int:
        return len(self.rollouts)

    @property
    def names(self) -> list[str]:
        return list(self.rollouts)

    def get(self, name: str) -> Rollout:
        """The rollout of migration ``name``; UnknownMigration if none is configured."""
        rollout = self.rollouts.get(name)
        if rollout is None:
            raise UnknownMigration(name, self.names)
        return rollout

    async def set_baselines(self, values: dict[str, float]) -> None:
        """Save each named migration's memory baseline, all in one write; SaveError (nothing
        changed) if it cannot be saved."""
        states = {
            name: replace(rollout.state, baseline_memory_bytes=values[name],
                          history=list(rollout.state.history))
            for name, rollout in self.rollouts.items()
            if name in values
        }  # fmt: skip
        if not states:
            return
        await self.book.save_many(states)
        for name, state in states.items():
            self.rollouts[name].state = state

    # -- keeping in step -----------------------------------------------------------------

    async def sync(self) -> None:
        """Adopt what another process saved since this one last looked (call with the
        coordination's state lock held)."""
        if await self.book.refresh():
            for rollout in self:
                rollout.adopt_saved()

    async def reconfigure(self, settings: Settings) -> None:
        """Follow a reload: each kept migration takes its new stages and thresholds, a new
        one starts (saved first: SaveError leaves everything as it was), a removed one is
        dropped. Call with the coordination's state lock held."""
        await self.sync()
        configs = settings.migration_list
        added = [c for c in configs if c.name not in self.rollouts]
        starts = {}
        for config in added:
            saved = self.book.states.get(config.name)  # another worker's reload started it
            if saved is None:
                state = transitions.initial_state(config)
                reason = "added by a config reload: starting"
                starts[config.name] = transitions.start(state, self.clock(), reason)
                starts[config.name][0].host = self.host
        if starts:
            await self.book.save_many({name: state for name, (_, state) in starts.items()})
        kept = {c.name: self.rollouts[c.name] for c in configs if c.name in self.rollouts}
        self.rollouts = {}
        for config in configs:
            rollout = kept.get(config.name)
            if rollout is None:
                rollout = self._rollout(settings, config, self.book.states.get(config.name))
            else:
                self.rollouts[config.name] = rollout
                rollout.config = config.rollout
                rollout.manual_weight = config.weight
                guard = config.guard.over(settings.guard)
                rollout.failures_to_rollback = guard.failures_to_rollback
        for name, (made, state) in starts.items():
            self.rollouts[name].commit(made, state)
