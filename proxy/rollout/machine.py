"""The staged rollout: phases, stages, and every transition recorded durably.

Phases: ``progressing`` → ``promoted``, or → ``rolled_back``; ``paused`` stops promotion
(an operator's pause, or a manual weight); ``manual`` is the phase when no rollout stages
are configured. The guard and the admin API drive it; listeners apply each transition
(the splitter's weight, metrics, logs, the webhook).

Every transition is saved before anything changes: the new state is written to the state
file (off the event loop), and only then becomes the rollout's state and reaches the
listeners. A save that fails (``SaveError``) leaves memory, file and splitter as they were.

Holds are timed on the monotonic clock, so a wall-clock jump neither shortens nor lengthens
one; the wall clock only stamps transitions. A wall-clock time read from a file (a
transition's ``at``, a saved hold) is converted to the monotonic clock once, when read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from cutover.config import RolloutConfig, Settings
from cutover.rollout.checks import Result, Verdict
from cutover.rollout.guard_status import SharedEvaluation
from cutover.rollout.state import RolloutState, SaveError, Stamp, StateStore, Transition

Listener = Callable[[Transition, RolloutState], None]
Clock = Callable[[], float]

logger = logging.getLogger("cutover.rollout")


class RolloutError(Exception):
    """An operator action that the current phase does not allow."""


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def initial_state(settings: Settings) -> RolloutState:
    if settings.rollout is None:
        return RolloutState(phase="manual", weight=settings.split.weight)
    first = settings.rollout.stages[0].weight
    return RolloutState(phase="progressing", weight=max(settings.split.weight, first))


class Rollout:
    def __init__(
        self,
        config: RolloutConfig | None,
        state: RolloutState,
        store: StateStore,
        *,
        failures_to_rollback: int = 2,
        manual_weight: float = 0.0,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        """``clock``: wall-clock Unix seconds, for the timestamps saved and shown;
        ``monotonic``: for holds and every other duration."""
        self.config = config
        self.manual_weight = manual_weight
        self.state = state
        self.store = store
        self.failures_to_rollback = failures_to_rollback
        self.clock = clock
        self.monotonic = monotonic
        self.listeners: list[Listener] = []
        # Called when another process changed the state (multi-worker): apply, don't announce.
        self.sync_listeners: list[Callable[[RolloutState], None]] = []
        self._stamp = store.stamp()
        self.healthy_since: float | None = None  # monotonic
        self.consecutive_failures = 0
        self.latest: dict[str, Verdict] = {}
        # The guard's rollback that could not be saved: tried again at the next evaluation.
        self.pending_rollback: Verdict | None = None
        # judging_since() on the monotonic clock: (the transition's wall time, converted).
        self._judging: tuple[float, float] | None = None

    @classmethod
    def restore(
        cls,
        settings: Settings,
        store: StateStore,
        *,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> Rollout:
        """The saved rollout, or a new one from the config (saved at once); StateError if
        the file is unusable, SaveError if a new one cannot be written. Blocking: for
        start-up, before the proxy serves."""
        saved = store.load()
        rollout = cls(
            settings.rollout,
            saved or initial_state(settings),
            store,
            failures_to_rollback=settings.guard.failures_to_rollback,
            manual_weight=settings.split.weight,
            clock=clock,
            monotonic=monotonic,
        )
        if saved is None:
            state = rollout.state
            transition, new = rollout._transition(
                state.phase, state.weight, "no saved state: starting", "startup", "start"
            )
            rollout._commit(transition, new, store.save(new))
        return rollout

    async def sync(self) -> bool:
        """Adopt the state file if another process saved it since we last did; True if so.
        Call with the coordination's state lock held."""
        stamp, saved = await asyncio.to_thread(self._read_if_changed)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        if saved is None or saved == self.state:
            return False
        moved = (saved.phase, saved.weight) != (self.state.phase, self.state.weight)
        self.state = saved
        if moved:
            self.healthy_since = None
            self.consecutive_failures = 0
            self.pending_rollback = None  # decided against a state that is gone
        for listener in self.sync_listeners:
            listener(saved)
        return True

    def _read_if_changed(self) -> tuple[Stamp | None, RolloutState | None]:
        stamp = self.store.stamp()
        return stamp, (None if stamp == self._stamp else self.store.load())

    async def _save(self, state: RolloutState) -> None:
        """Write ``state`` off the event loop; SaveError if it cannot be written."""
        self._stamp = await asyncio.to_thread(self.store.save, state)

    # -- reading ---------------------------------------------------------------------

    @property
    def phase(self) -> str:
        return self.state.phase

    @property
    def weight(self) -> float:
        return self.state.weight

    def stage(self) -> int | None:
        """Index of the highest stage at or below the current weight."""
        if self.config is None:
            return None
        reached = [i for i, s in enumerate(self.config.stages) if s.weight <= self.state.weight]
        return reached[-1] if reached else None

    def next_weight(self) -> float | None:
        if self.config is None:
            return None
        above = [s.weight for s in self.config.stages if s.weight > self.state.weight]
        return above[0] if above else None

    def hold(self) -> float | None:
        if self.config is None:
            return None
        index = self.stage()
        return self.config.hold_for(index) if index is not None else self.config.hold

    def healthy_for(self) -> float | None:
        """Seconds every check has passed in a row (monotonic), None when not passing."""
        if self.healthy_since is None:
            return None
        return max(0.0, self.monotonic() - self.healthy_since)

    def status(self) -> dict[str, Any]:
        healthy_for = self.healthy_for()
        next_in = None
        hold = self.hold()
        if self.phase == "progressing" and hold is not None and self.next_weight() is not None:
            next_in = max(0.0, hold - healthy_for) if healthy_for is not None else None
        stages = [] if self.config is None else self.config.stages
        return {
            "phase": self.phase,
            "weight": self.weight,
            "stage": self.stage(),
            "stages": [
                {"weight": s.weight, "hold": self.config.hold_for(i)}  # type: ignore[union-attr]
                for i, s in enumerate(stages)
            ],
            "reason": self.state.reason,
            "failure": self.state.failure,
            "healthy_for": healthy_for,
            "next_promotion_in": next_in,
            "consecutive_failures": self.consecutive_failures,
            "baseline_memory_bytes": self.state.baseline_memory_bytes,
            "checks": {
                name: {k: v for k, v in verdict.as_dict().items() if k != "check"}
                for name, verdict in self.latest.items()
            },
            "history": [{**vars(t), "at": iso(t.at)} for t in self.state.history],
        }

    # -- sharing the guard's evaluation ---------------------------------------------------

    def _judged(self) -> float | None:
        return self.state.history[-1].at if self.state.history else None

    def shared(self) -> SharedEvaluation:
        """This process's latest evaluation, for the other workers and for a restart."""
        return SharedEvaluation(
            at=self.clock(),
            judged=self._judged(),
            healthy_for=self.healthy_for(),
            consecutive_failures=self.consecutive_failures,
            checks=tuple(self.latest.values()),
        )

    def adopt(self, shared: SharedEvaluation, *, fresh: float) -> None:
        """Take over the leader's latest evaluation. Its hold counts only if it belongs to
        the state's current stage (no transition since); the time since it was written
        counts too when no more than ``fresh`` seconds (the leader is evaluating) and not
        at all otherwise (nobody was watching: after a restart, pass ``fresh=0``)."""
        self.latest = {verdict.check: verdict for verdict in shared.checks}
        if shared.judged != self._judged():
            self.healthy_since = None
            self.consecutive_failures = 0
            return
        self.consecutive_failures = shared.consecutive_failures
        if shared.healthy_for is None:
            self.healthy_since = None
            return
        gap = self.clock() - shared.at
        credit = gap if 0 <= gap <= fresh else 0.0
        self.healthy_since = self.monotonic() - (shared.healthy_for + credit)

    # -- the guard's input -----------------------------------------------------------

    async def evaluate(
        self, verdicts: list[Verdict], *, errors_fail: bool = False
    ) -> Transition | None:
        """Apply one guard evaluation. A check that fails ``failures_to_rollback`` times in a
        row (no passing evaluation between) rolls back; all checks passing for the stage's
        hold promotes. No data and source errors neither count nor reset the failure run;
        a failing check that does not roll back (shadow, by default) only blocks promotion.
        A transition that cannot be saved is logged and changes nothing; a rollback is then
        tried again at the next evaluation, whatever it finds."""
        now = self.monotonic()
        self.latest = {v.check: v for v in verdicts}
        failing = [
            v for v in verdicts
            if v.rolls_back
            and (v.result is Result.FAIL or (errors_fail and v.result is Result.ERROR))
        ]  # fmt: skip
        if failing:
            self.healthy_since = None
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.failures_to_rollback and self.can_roll_back():
                return await self._guard_rollback(failing[0])
            return None
        if self.pending_rollback is not None and self.can_roll_back():
            return await self._guard_rollback(self.pending_rollback)
        if not verdicts or any(v.result is not Result.PASS for v in verdicts):
            self.healthy_since = None
            return None
        self.consecutive_failures = 0
        if self.healthy_since is None:
            self.healthy_since = now
        hold = self.hold()
        if self.phase == "progressing" and hold is not None and now - self.healthy_since >= hold:
            return await self._guarded(
                self._advance("every check passed for the stage's hold", "guard")
            )
        return None

    def can_roll_back(self) -> bool:
        return self.phase != "rolled_back"

    async def _guard_rollback(self, verdict: Verdict) -> Transition | None:
        value = "n/a" if verdict.value is None else f"{verdict.value:.3g}"
        reason = (
            f"{verdict.check} {value} > {verdict.threshold:g}"
            if verdict.threshold
            else (f"{verdict.check}: {verdict.detail}")
        )
        self.pending_rollback = verdict
        return await self._guarded(
            self._transition(
                "rolled_back", 0.0, reason, "guard", "rollback", failure=verdict.as_dict()
            )
        )

    async def _guarded(self, change: tuple[Transition, RolloutState]) -> Transition | None:
        """The guard's own transitions: one that cannot be saved is logged (by _apply) and
        decided again at the next evaluation; the guard loop carries on."""
        try:
            return await self._apply(*change)
        except SaveError:
            return None

    # -- operator actions --------------------------------------------------------------

    async def pause(self) -> Transition:
        if self.phase != "progressing":
            raise RolloutError(f"only a progressing rollout can be paused; it is {self.phase}")
        return await self._record("paused", self.weight, "paused by operator", "operator", "pause")

    async def resume(self) -> Transition:
        if self.config is None:
            raise RolloutError("no rollout stages are configured; the weight is manual")
        if self.phase != "paused":
            hint = " (use restart after a rollback)" if self.phase == "rolled_back" else ""
            raise RolloutError(f"only a paused rollout can be resumed; it is {self.phase}{hint}")
        return await self._record(
            "progressing", self.weight, "resumed by operator", "operator", "resume"
        )

    async def promote(self) -> Transition:
        if self.config is None:
            raise RolloutError("no rollout stages are configured; use set-weight")
        if self.phase == "rolled_back":
            raise RolloutError("the rollout was rolled back; restart it first")
        if self.next_weight() is None:
            raise RolloutError(f"already at the last stage ({self.weight:g}%)")
        return await self._apply(*self._advance("promoted by operator", "operator"))

    async def rollback(self, reason: str | None = None) -> Transition:
        if self.phase == "rolled_back":
            raise RolloutError("already rolled back")
        reason = reason or "rolled back by operator"
        return await self._record("rolled_back", 0.0, reason, "operator", "rollback")

    async def restart(self) -> Transition:
        if self.phase != "rolled_back":
            raise RolloutError(f"restart is for after a rollback; the rollout is {self.phase}")
        if self.config is None:
            weight, phase = self.manual_weight, "manual"
        else:
            weight, phase = self.config.stages[0].weight, "progressing"
        return await self._record(
            phase, weight, "restarted by operator", "operator", "restart",
            baseline_memory_bytes=None,
        )  # fmt: skip

    async def set_weight(self, weight: float) -> Transition:
        if not 0 <= weight <= 100:
            raise RolloutError("weight must be between 0 and 100")
        phase = "manual" if self.config is None else "paused"
        reason = f"weight set to {weight:g}% by operator"
        return await self._record(phase, weight, reason, "operator", "set_weight")

    def judging_since(self) -> float | None:
        """Readings from before this moment belong to an attempt that was rolled back (or
        to before this rollout began), and are not held against new: the last start, or
        the last transition out of ``rolled_back`` (restart, set-weight, ...). Wall-clock
        Unix seconds, as saved."""
        for transition in reversed(self.state.history):
            if transition.kind == "start" or transition.from_phase == "rolled_back":
                return transition.at
        return None

    def judging_since_monotonic(self) -> float | None:
        """``judging_since()`` on the monotonic clock: exact for a transition made by this
        process, converted once for one read from the file (a restart, another worker)."""
        at = self.judging_since()
        if at is None:
            return None
        if self._judging is None or self._judging[0] != at:
            age = max(0.0, self.clock() - at)
            self._judging = (at, self.monotonic() - age)
        return self._judging[1]

    # -- bookkeeping -------------------------------------------------------------------

    async def set_baseline_memory(self, value: float) -> None:
        """Save new's memory baseline; SaveError (nothing changed) if it cannot be saved."""
        state = replace(self.state, baseline_memory_bytes=value, history=list(self.state.history))
        await self._save(state)
        self.state = state

    def _advance(self, reason: str, actor: str) -> tuple[Transition, RolloutState]:
        target = self.next_weight()
        assert target is not None and self.config is not None
        last = target == self.config.stages[-1].weight
        phase = "promoted" if last else self.phase
        return self._transition(phase, target, reason, actor, "promote")

    def _transition(
        self,
        phase: str,
        weight: float,
        reason: str,
        actor: str,
        kind: str,
        *,
        failure: dict[str, Any] | None = None,
        **changes: Any,
    ) -> tuple[Transition, RolloutState]:
        """The transition and the state it leads to; nothing is changed yet."""
        previous = self.state.history[-1] if self.state.history else None
        transition = Transition(
            at=self.clock(),
            from_phase=self.state.phase if previous else None,
            to_phase=phase,
            from_weight=self.state.weight if previous else None,
            to_weight=weight,
            reason=reason,
            actor=actor,
            kind=kind,
            failure=failure,
        )
        state = replace(
            self.state,
            phase=phase,
            weight=weight,
            reason=reason,
            failure=failure,
            history=[*self.state.history, transition],
            **changes,
        )
        return transition, state

    async def _record(
        self, phase: str, weight: float, reason: str, actor: str, kind: str, **changes: Any
    ) -> Transition:
        return await self._apply(*self._transition(phase, weight, reason, actor, kind, **changes))

    async def _apply(self, transition: Transition, state: RolloutState) -> Transition:
        """Save first, then apply: SaveError (logged, nothing changed) if the save fails.
        Once the write has begun it is seen through even if the caller is cancelled (the
        guard stopped by a reload), so memory never falls behind the file."""
        saving = asyncio.ensure_future(self._save_then_commit(transition, state))
        try:
            return await asyncio.shield(saving)
        except asyncio.CancelledError:
            saving.add_done_callback(_consume)  # a SaveError then is logged already
            raise

    async def _save_then_commit(self, transition: Transition, state: RolloutState) -> Transition:
        try:
            await self._save(state)
        except SaveError as exc:
            logger.error(
                "the %s by %s was not made (phase %s, weight %g%% unchanged): %s",
                transition.kind, transition.actor, self.state.phase, self.state.weight, exc,
            )  # fmt: skip
            raise
        self._commit(transition, state, self._stamp)
        return transition

    def _commit(self, transition: Transition, state: RolloutState, stamp: Stamp | None) -> None:
        self.state = state
        self._stamp = stamp
        self.healthy_since = None
        self.consecutive_failures = 0
        self.pending_rollback = None
        if transition.kind == "start" or transition.from_phase == "rolled_back":
            self._judging = (transition.at, self.monotonic())
        for listener in self.listeners:
            listener(transition, self.state)


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
