"""The staged rollout: phases, stages, and every transition recorded durably.

Phases: ``progressing`` → ``promoted``, or → ``rolled_back``; ``paused`` stops promotion
(an operator's pause, or a manual weight); ``manual`` is the phase when no rollout stages
are configured. The guard and the admin API drive it; listeners apply each transition
(the splitter's weight, metrics, logs, the webhook).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .checks import Result, Verdict
from .config import Rollout as RolloutConfig
from .config import Settings
from .state import RolloutState, StateStore, Transition

Listener = Callable[[Transition, RolloutState], None]


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.manual_weight = manual_weight
        self.state = state
        self.store = store
        self.failures_to_rollback = failures_to_rollback
        self.clock = clock
        self.listeners: list[Listener] = []
        # Called when another process changed the state (multi-worker): apply, don't announce.
        self.sync_listeners: list[Callable[[RolloutState], None]] = []
        self._stamp = store.stamp()
        self.healthy_since: float | None = None
        self.consecutive_failures = 0
        self.latest: dict[str, Verdict] = {}

    @classmethod
    def restore(
        cls, settings: Settings, store: StateStore, *, clock: Callable[[], float] = time.time
    ) -> Rollout:
        """The saved rollout, or a new one from the config; StateError if the file is unusable."""
        saved = store.load()
        rollout = cls(
            settings.rollout,
            saved or initial_state(settings),
            store,
            failures_to_rollback=settings.guard.failures_to_rollback,
            manual_weight=settings.split.weight,
            clock=clock,
        )
        if saved is None:
            state = rollout.state
            rollout._record(
                state.phase, state.weight, "no saved state: starting", "startup", "start"
            )
        return rollout

    def sync(self) -> bool:
        """Adopt the state file if another process saved it since we last did; True if so.
        Call with the coordination's state lock held."""
        stamp = self.store.stamp()
        if stamp == self._stamp:
            return False
        saved = self.store.load()
        self._stamp = stamp
        if saved is None or saved == self.state:
            return False
        moved = (saved.phase, saved.weight) != (self.state.phase, self.state.weight)
        self.state = saved
        if moved:
            self.healthy_since = None
            self.consecutive_failures = 0
        for listener in self.sync_listeners:
            listener(saved)
        return True

    def save(self) -> None:
        self.store.save(self.state)
        self._stamp = self.store.stamp()

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

    def status(self) -> dict[str, Any]:
        now = self.clock()
        healthy_for = None if self.healthy_since is None else now - self.healthy_since
        next_in = None
        hold = self.hold()
        if self.phase == "progressing" and hold is not None and self.next_weight() is not None:
            next_in = max(0.0, hold - (healthy_for or 0.0)) if healthy_for is not None else None
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

    # -- the guard's input -----------------------------------------------------------

    def evaluate(self, verdicts: list[Verdict], *, errors_fail: bool = False) -> Transition | None:
        """Apply one guard evaluation. A check that fails ``failures_to_rollback`` times in a
        row (no passing evaluation between) rolls back; all checks passing for the stage's
        hold promotes. No data and source errors neither count nor reset the failure run;
        a failing check that does not roll back (shadow, by default) only blocks promotion."""
        now = self.clock()
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
                return self._guard_rollback(failing[0])
            return None
        if not verdicts or any(v.result is not Result.PASS for v in verdicts):
            self.healthy_since = None
            return None
        self.consecutive_failures = 0
        if self.healthy_since is None:
            self.healthy_since = now
        hold = self.hold()
        if self.phase == "progressing" and hold is not None and now - self.healthy_since >= hold:
            return self._advance("every check passed for the stage's hold", "guard")
        return None

    def can_roll_back(self) -> bool:
        return self.phase != "rolled_back"

    def _guard_rollback(self, verdict: Verdict) -> Transition:
        value = "n/a" if verdict.value is None else f"{verdict.value:.3g}"
        reason = (
            f"{verdict.check} {value} > {verdict.threshold:g}"
            if verdict.threshold
            else (f"{verdict.check}: {verdict.detail}")
        )
        return self._record(
            "rolled_back", 0.0, reason, "guard", "rollback", failure=verdict.as_dict()
        )

    # -- operator actions --------------------------------------------------------------

    def pause(self) -> Transition:
        if self.phase != "progressing":
            raise RolloutError(f"only a progressing rollout can be paused; it is {self.phase}")
        return self._record("paused", self.weight, "paused by operator", "operator", "pause")

    def resume(self) -> Transition:
        if self.config is None:
            raise RolloutError("no rollout stages are configured; the weight is manual")
        if self.phase != "paused":
            hint = " (use restart after a rollback)" if self.phase == "rolled_back" else ""
            raise RolloutError(f"only a paused rollout can be resumed; it is {self.phase}{hint}")
        return self._record("progressing", self.weight, "resumed by operator", "operator", "resume")

    def promote(self) -> Transition:
        if self.config is None:
            raise RolloutError("no rollout stages are configured; use set-weight")
        if self.phase == "rolled_back":
            raise RolloutError("the rollout was rolled back; restart it first")
        if self.next_weight() is None:
            raise RolloutError(f"already at the last stage ({self.weight:g}%)")
        return self._advance("promoted by operator", "operator")

    def rollback(self, reason: str | None = None) -> Transition:
        if self.phase == "rolled_back":
            raise RolloutError("already rolled back")
        reason = reason or "rolled back by operator"
        return self._record("rolled_back", 0.0, reason, "operator", "rollback")

    def restart(self) -> Transition:
        if self.phase != "rolled_back":
            raise RolloutError(f"restart is for after a rollback; the rollout is {self.phase}")
        self.state.baseline_memory_bytes = None
        if self.config is None:
            weight, phase = self.manual_weight, "manual"
        else:
            weight, phase = self.config.stages[0].weight, "progressing"
        return self._record(phase, weight, "restarted by operator", "operator", "restart")

    def set_weight(self, weight: float) -> Transition:
        if not 0 <= weight <= 100:
            raise RolloutError("weight must be between 0 and 100")
        phase = "manual" if self.config is None else "paused"
        reason = f"weight set to {weight:g}% by operator"
        return self._record(phase, weight, reason, "operator", "set_weight")

    def judging_since(self) -> float | None:
        """Readings from before this moment belong to an attempt that was rolled back (or
        to before this rollout began), and are not held against new: the last start, or
        the last transition out of ``rolled_back`` (restart, set-weight, ...)."""
        for transition in reversed(self.state.history):
            if transition.kind == "start" or transition.from_phase == "rolled_back":
                return transition.at
        return None

    # -- bookkeeping -------------------------------------------------------------------

    def set_baseline_memory(self, value: float) -> None:
        self.state.baseline_memory_bytes = value
        self.save()

    def _advance(self, reason: str, actor: str) -> Transition:
        target = self.next_weight()
        assert target is not None and self.config is not None
        last = target == self.config.stages[-1].weight
        phase = "promoted" if last else self.phase
        return self._record(phase, target, reason, actor, "promote")

    def _record(
        self,
        phase: str,
        weight: float,
        reason: str,
        actor: str,
        kind: str,
        *,
        failure: dict[str, Any] | None = None,
    ) -> Transition:
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
        self.state.phase = phase
        self.state.weight = weight
        self.state.reason = reason
        self.state.failure = failure
        self.state.history.append(transition)
        self.healthy_since = None
        self.consecutive_failures = 0
        self.save()
        for listener in self.listeners:
            listener(transition, self.state)
        return transition
