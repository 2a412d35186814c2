"""One migration's staged rollout: phases, stages, and every transition recorded durably.

Phases: ``progressing`` → ``promoted``, or → ``rolled_back``; ``paused`` stops promotion
(an operator's pause, or a manual weight); ``manual`` is the phase when no rollout stages
are configured. The guard and the operator (``control.py``) drive it; which transition each
makes from which phase is ``transitions.py``'s. Listeners apply each transition (the
splitter's weight, metrics, logs, the webhook).

Every transition is saved before anything changes: the new state is written to the state
file (off the event loop, through the ``StateBook`` every migration shares), and only then
becomes the rollout's state and reaches the listeners. A save that fails (``SaveError``)
leaves memory, file and splitter as they were.

Holds are timed on the monotonic clock, so a wall-clock jump neither shortens nor lengthens
one; the wall clock only stamps transitions. A wall-clock time read from a file (a
transition's ``at``, a saved hold) is converted to the monotonic clock once, when read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from cutover.config import RolloutConfig
from cutover.rollout import stages, transitions
from cutover.rollout.book import Book
from cutover.rollout.checks import Verdict
from cutover.rollout.decision import decide
from cutover.rollout.guard_status import SharedEvaluation
from cutover.rollout.state import RolloutState, SaveError, Transition
from cutover.rollout.transitions import Change
from cutover.vocabulary import Phase, Role

# (migration name, the transition, the state it led to)
Listener = Callable[[str, Transition, RolloutState], None]
SyncListener = Callable[[str, RolloutState], None]
Clock = Callable[[], float]

logger = logging.getLogger("cutover.rollout")


class Rollout:
    def __init__(
        self,
        name: str,
        config: RolloutConfig | None,
        state: RolloutState,
        book: Book,
        *,
        failures_to_rollback: int = 2,
        manual_weight: float = 0.0,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        """``clock``: wall-clock Unix seconds, for the timestamps saved and shown;
        ``monotonic``: for holds and every other duration."""
        self.name = name
        self.host: str | None = None  # stamped on its transitions (a fleet on Redis)
        self.config = config
        self.manual_weight = manual_weight
        self.state = state
        self.book = book
        self.failures_to_rollback = failures_to_rollback
        self.clock = clock
        self.monotonic = monotonic
        self.listeners: list[Listener] = []
        # Called when another process changed the state (multi-worker): apply, don't announce.
        self.sync_listeners: list[SyncListener] = []
        self.healthy_since: float | None = None  # monotonic
        self.consecutive_failures = 0
        self.latest: dict[str, Verdict] = {}
        # The guard's rollback that could not be saved: tried again at the next evaluation.
        self.pending_rollback: Verdict | None = None
        # judging_since() on the monotonic clock: (the transition's wall time, converted).
        self._judging: tuple[float, float] | None = None

    def adopt_saved(self) -> bool:
        """Take the book's state of this migration if it is not the one held; True if so."""
        saved = self.book.states.get(self.name)
        if saved is None or saved is self.state or saved == self.state:
            return False
        moved = (saved.phase, saved.weight) != (self.state.phase, self.state.weight)
        self.state = saved
        if moved:
            self.healthy_since = None
            self.consecutive_failures = 0
            self.pending_rollback = None  # decided against a state that is gone
        for listener in self.sync_listeners:
            listener(self.name, saved)
        return True

    async def _save(self, state: RolloutState) -> None:
        """Write ``state`` off the event loop; SaveError if it cannot be written."""
        await self.book.save(self.name, state)

    # -- reading ---------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def weight(self) -> float:
        return self.state.weight

    def stage(self) -> int | None:
        """Index of the highest stage at or below the current weight."""
        return stages.stage_index(self.config, self.state.weight)

    def next_weight(self) -> float | None:
        return stages.next_weight(self.config, self.state.weight)

    def hold(self) -> float | None:
        return stages.hold_at(self.config, self.state.weight)

    def healthy_for(self) -> float | None:
        """Seconds every check has passed in a row (monotonic), None when not passing."""
        if self.healthy_since is None:
            return None
        return max(0.0, self.monotonic() - self.healthy_since)

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
        """Take over the leader's latest evaluation (``SharedEvaluation.carried_over``;
        after a restart, pass ``fresh=0``)."""
        self.latest = {verdict.check: verdict for verdict in shared.checks}
        self.healthy_since, self.consecutive_failures = shared.carried_over(
            self._judged(), now=self.clock(), monotonic_now=self.monotonic(), fresh=fresh
        )

    # -- the guard's input -----------------------------------------------------------

    async def evaluate(
        self, verdicts: list[Verdict], *, errors_fail: bool = False
    ) -> Transition | None:
        """Apply one guard evaluation (``decision.decide`` says what it decides). A
        transition that cannot be saved is logged and changes nothing; a rollback is then
        tried again at the next evaluation."""
        self.latest = {v.check: v for v in verdicts}
        decision = decide(
            verdicts, phase=self.phase, now=self.monotonic(), hold=self.hold(),
            healthy_since=self.healthy_since, consecutive_failures=self.consecutive_failures,
            failures_to_rollback=self.failures_to_rollback,
            pending_rollback=self.pending_rollback, errors_fail=errors_fail,
        )  # fmt: skip
        self.healthy_since = decision.healthy_since
        self.consecutive_failures = decision.consecutive_failures
        if decision.rollback is not None:
            return await self._guard_rollback(decision.rollback)
        if decision.promote:
            change = transitions.guard_promote(self.state, self.config, self.clock())
            return await self._guarded(change)
        return None

    async def _guard_rollback(self, verdict: Verdict) -> Transition | None:
        self.pending_rollback = verdict
        return await self._guarded(transitions.guard_rollback(self.state, self.clock(), verdict))

    async def _guarded(self, change: Change) -> Transition | None:
        """The guard's own transitions: one that cannot be saved is logged (by _apply) and
        decided again at the next evaluation; the guard loop carries on."""
        try:
            return await self._apply(*change)
        except SaveError:
            return None

    # -- operator actions (transitions.py says which phase allows which) ----------------

    async def pause(self, role: Role | None = None) -> Transition:
        return await self._apply(*transitions.pause(self.state, self.clock()), role=role)

    async def resume(self, role: Role | None = None) -> Transition:
        change = transitions.resume(self.state, self.config, self.clock())
        return await self._apply(*change, role=role)

    async def promote(self, role: Role | None = None) -> Transition:
        change = transitions.promote(self.state, self.config, self.clock())
        return await self._apply(*change, role=role)

    async def rollback(self, reason: str | None = None, role: Role | None = None) -> Transition:
        change = transitions.rollback(self.state, self.clock(), reason)
        return await self._apply(*change, role=role)

    async def restart(self, role: Role | None = None) -> Transition:
        change = transitions.restart(self.state, self.config, self.manual_weight, self.clock())
        return await self._apply(*change, role=role)

    async def set_weight(self, weight: float, role: Role | None = None) -> Transition:
        change = transitions.set_weight(self.state, self.config, weight, self.clock())
        return await self._apply(*change, role=role)

    def judging_since(self) -> float | None:
        """Wall-clock Unix seconds (``transitions.judging_since``)."""
        return transitions.judging_since(self.state.history)

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

    async def _apply(
        self, transition: Transition, state: RolloutState, *, role: Role | None = None
    ) -> Transition:
        """Save first, then apply: SaveError (logged, nothing changed) if the save fails.
        Once the write has begun it is seen through even if the caller is cancelled (the
        guard stopped by a reload), so memory never falls behind the file."""
        transition.role = role  # the console's signed-in role (None: not from the console)
        saving = asyncio.ensure_future(self._save_then_commit(transition, state))
        try:
            return await asyncio.shield(saving)
        except asyncio.CancelledError:
            saving.add_done_callback(_consume)  # a SaveError then is logged already
            raise

    async def _save_then_commit(self, transition: Transition, state: RolloutState) -> Transition:
        transition.host = self.host
        try:
            await self._save(state)
        except SaveError as exc:
            logger.error(
                "%s: the %s by %s was not made (phase %s, weight %g%% unchanged): %s",
                self.name, transition.kind, transition.actor, self.state.phase,
                self.state.weight, exc,
            )  # fmt: skip
            raise
        self.commit(transition, state)
        return transition

    def commit(self, transition: Transition, state: RolloutState) -> None:
        """Make a saved transition the rollout's, and tell the listeners."""
        self.state = state
        self.healthy_since = None
        self.consecutive_failures = 0
        self.pending_rollback = None
        if transitions.opens_judging(transition):
            self._judging = (transition.at, self.monotonic())
        for listener in self.listeners:
            listener(self.name, transition, self.state)


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
