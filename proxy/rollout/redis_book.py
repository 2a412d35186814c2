"""Every migration's state in Redis, shared by a fleet of hosts: one versioned document per
migration, each write a compare-and-set on its revision (a Lua script, so the check and the
write are one step). A write that loses the race is refused (``StateConflict``) after the
winner's document is read back, so the caller decides again on what is there now; a guard
write that carries an older lease epoch than Redis holds is refused (``Fenced``).

When Redis cannot be reached the book fails static: the last known states stay (and are
kept on local disk, ``state.cache_path``, for a start without Redis); a write is refused
(``StoreUnavailable``), except a guard's move towards ``from`` (a rollback), which is held
locally and written back, on top of whatever the fleet wrote meanwhile, once Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import redis
import redis.asyncio as aioredis

from cutover.rollout.redis_documents import (
    CAS_SCRIPT,
    UNREACHABLE,
    document,
    on_top,
    towards_from,
)
from cutover.rollout.redis_keys import RedisKeys
from cutover.rollout.state import (
    RolloutState,
    SaveError,
    StateError,
    StateStore,
)
from cutover.rollout.store_errors import Fenced, StateConflict, StoreUnavailable

logger = logging.getLogger("cutover.state")


class RedisBook:
    def __init__(
        self,
        keys: RedisKeys,
        client: aioredis.Redis,
        sync_client: redis.Redis,
        cache: StateStore,
        *,
        where: str,
        on_write: Any = None,
    ) -> None:
        """``where``: the store as named in errors; ``on_write(result)``: counts each write
        (ok, conflict, fenced, error)."""
        self.keys = keys
        self.client = client
        self.sync_client = sync_client
        self.cache = cache
        self.where = where
        self.on_write = on_write or (lambda result: None)
        self.states: dict[str, RolloutState] = {}
        self.revs: dict[str, int] = {}
        self.available = True
        self.fence: int | None = None  # the guard leader's epoch while it writes
        self.guarding = False  # the guard is writing (led or alone)
        # Guard moves towards ``from`` made while Redis was unreachable, to write back.
        self.pending: dict[str, RolloutState] = {}
        # A lost compare-and-set read the winner's document: the next refresh reports it,
        # so the migrations adopt it (the revision is current already).
        self._read_on_conflict = False
        self._saving = asyncio.Lock()
        self._cas = client.register_script(CAS_SCRIPT)
        self._sync_cas = sync_client.register_script(CAS_SCRIPT)

    @contextlib.contextmanager
    def fenced(self, epoch: int | None) -> Iterator[None]:
        """Writes made inside are the guard's, carrying ``epoch`` (None: judging alone)."""
        self.fence, self.guarding = epoch, True
        try:
            yield
        finally:
            self.fence, self.guarding = None, False

    # -- start-up (blocking) ---------------------------------------------------------

    def load(self) -> None:
        """Every migration's document from Redis; when Redis cannot be reached, the cached
        state (StateError when there is none: a host must not start from nothing)."""
        try:
            names = sorted(n.decode() for n in self.sync_client.smembers(self.keys.migrations))
            pipe = self.sync_client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self.keys.migration(name))
            raws = pipe.execute()
        except redis.AuthenticationError as exc:
            # Not an outage: waiting or serving the cache would hide a wrong password.
            reason = (
                f"{self.where} refused this host: {exc} (the password is CUTOVER_STATE__PASSWORD)"
            )
            raise StateError([reason]) from None
        except UNREACHABLE as exc:
            cached = self.cache.load()
            if cached is None:
                raise StateError(
                    [f"redis unreachable and no cached state ({self.where}: {exc}; "
                     f"no {self.cache.path})"]
                ) from None  # fmt: skip
            logger.warning("%s unreachable (%s): serving the cached state", self.where, exc)
            self.states, self.revs, self.available = cached, {}, False
            return
        if not names and self._seed_from_cache():
            return self.load()  # the cache's states, now the fleet's
        documents = {
            name: document(name, raw) for name, raw in zip(names, raws, strict=True) if raw
        }
        self.revs = {name: rev for name, (rev, _) in documents.items()}
        self.states = {name: state for name, (_, state) in documents.items()}
        self._write_cache()

    def _seed_from_cache(self) -> bool:
        """An empty Redis (a first start, or a move from the file backend with ``cache_path``
        naming the old state file) takes the cached states, so nothing is reset; the first
        host to write one wins. Whether any was written."""
        cached = self.cache.load()
        if not cached:
            return False
        written = 0
        for name, state in cached.items():
            outcome, _ = self._sync_cas(
                keys=self._script_keys(name), args=[0, self._json(state), "", name]
            )
            written += outcome == b"ok"
        if written:
            logger.warning("%s had no state: %d migrations written from %s", self.where,
                           written, self.cache.path)  # fmt: skip
        return True

    def save_blocking(self, changes: dict[str, RolloutState]) -> None:
        """Start-up's writes (migrations with no document yet). One another host wrote first
        is StateConflict; with Redis unreachable they are held to write back later."""
        if not self.available:
            self.states.update(changes)
            self.pending.update(changes)
            return
        for name, state in changes.items():
            outcome, rev = self._sync_cas(
                keys=self._script_keys(name),
                args=[self.revs.get(name, 0), self._json(state), "", name],
            )
            if outcome != b"ok":
                self.on_write("conflict")
                raise StateConflict(f"{name}: another host started it first")
            self.on_write("ok")
            self.revs[name], self.states[name] = int(rev), state
        self._write_cache()

    # -- serving ---------------------------------------------------------------------

    async def save(self, name: str, state: RolloutState) -> None:
        await self.save_many({name: state})

    async def save_many(self, changes: dict[str, RolloutState]) -> None:
        """Each state written with a compare-and-set on its revision; SaveError (that state
        and the ones after it not written) as described above."""
        async with self._saving:
            for name, state in changes.items():
                await self._save_one(name, state)
        await asyncio.to_thread(self._write_cache)

    async def _save_one(self, name: str, state: RolloutState) -> None:
        fence = "" if self.fence is None else self.fence
        try:
            outcome, value = await self._cas(
                keys=self._script_keys(name), args=[self.revs.get(name, 0), self._json(state),
                                                    fence, name],
            )  # fmt: skip
        except UNREACHABLE as exc:
            self._lost(exc)
            self.on_write("error")
            if self.guarding and towards_from(self.states.get(name), state):
                # Fail static, but safe: a rollback holds here and is written back later.
                self.states[name] = self.pending[name] = state
                return
            raise StoreUnavailable(f"the state store {self.where} is unreachable: {exc}") from exc
        outcome = outcome.decode()
        self.on_write(outcome)
        if outcome == "ok":
            self.revs[name], self.states[name] = int(value), state
            self.pending.pop(name, None)
            await self._announce(name)
            return
        if outcome == "fenced":
            raise Fenced(f"{name}: a newer guard leader (epoch {value}) holds the lease")
        await self._reread(name)
        self._read_on_conflict = True
        raise StateConflict(f"{name}: another host changed it first (revision {int(value)})")

    async def refresh(self) -> bool:
        """Re-read every document whose revision changed; True if any did. Unreachable:
        False, the last known states kept. Back after an outage: the held writes first."""
        try:
            names = sorted(n.decode() for n in await self.client.smembers(self.keys.migrations))
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.hget(self.keys.migration(name), "rev")
            revs = await pipe.execute()
        except UNREACHABLE as exc:
            self._lost(exc)
            return False
        if not self.available:
            logger.info("%s reachable again", self.where)
            self.available = True
        changed = [n for n, rev in zip(names, revs, strict=True)
                   if rev is not None and int(rev) != self.revs.get(n)]  # fmt: skip
        for name in changed:
            await self._reread(name)
        lost = [name for name in self.states if name not in names]
        if lost:
            await self._reseed(lost)
        if self.pending:
            await self._write_back()
        conflicted, self._read_on_conflict = self._read_on_conflict, False
        if changed or conflicted:  # the cache is the last known state, not only our writes
            await asyncio.to_thread(self._write_cache)
        return bool(changed) or conflicted

    async def _reseed(self, names: list[str]) -> None:
        """Documents Redis no longer has (it restarted without its data, or was flushed):
        written again from the last known state, so nothing is lost; the first host to do it
        wins, the others take its copy."""
        logger.warning("%s lost the state of %s: writing it again", self.where, ", ".join(names))
        async with self._saving:
            for name in names:
                self.revs[name] = 0
                with contextlib.suppress(StateConflict, StoreUnavailable):
                    await self._save_one(name, self.states[name])

    async def _reread(self, name: str) -> None:
        raw = await self.client.hgetall(self.keys.migration(name))
        if raw:
            self.revs[name], self.states[name] = document(name, raw)

    async def _write_back(self) -> None:
        """The rollbacks held during an outage, each on top of the document there now: the
        fleet's history kept, this host's transitions added, the phase and weight ours."""
        for name, held in list(self.pending.items()):
            remote = self.states.get(name)
            state = held
            if remote is not None and remote is not held:
                state = on_top(remote, held)
            try:
                async with self._saving:
                    await self._save_one(name, state)
            except StateConflict:
                continue  # re-read: tried again at the next refresh
            except SaveError as exc:
                logger.warning("%s: the rollback held during the outage waits: %s", name, exc)
                return
            logger.info("%s: the rollback held during the outage is written back", name)

    async def _announce(self, name: str) -> None:
        with contextlib.suppress(*UNREACHABLE):  # a hint only: the others read every poll
            await self.client.publish(self.keys.changes, name)

    def _lost(self, exc: BaseException) -> None:
        if self.available:
            logger.warning("%s unreachable (%s): serving the last known state", self.where, exc)
        self.available = False

    def _script_keys(self, name: str) -> list[str]:
        return [self.keys.migration(name), self.keys.epoch, self.keys.migrations]

    @staticmethod
    def _json(state: RolloutState) -> str:
        return json.dumps(state.to_json())

    def _write_cache(self) -> None:
        """The last known states on local disk, for a start without Redis; never fatal."""
        try:
            self.cache.save(dict(self.states))
        except SaveError as exc:
            logger.warning("the state cache was not written: %s", exc)
