"""The rollout's transitions as pure functions: from the current state (and the stages),
the transition and the state it leads to, or RolloutError when the phase does not allow
it. Nothing is saved or changed here: ``machine.Rollout`` saves the new state, then
applies it. ``at`` is the wall-clock time the transition is stamped with."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cutover.config import MigrationConfig, RolloutConfig
from cutover.rollout import stages
from cutover.rollout.checks import Verdict
from cutover.rollout.state import RolloutState, Transition
from cutover.vocabulary import Actor, Phase, TransitionKind

# The transition, and the state it leads to.
Change = tuple[Transition, RolloutState]


class RolloutError(Exception):
    """An operator action that the current phase does not allow."""


def initial_state(migration: MigrationConfig) -> RolloutState:
    """Where a migration with no saved state begins: at the first stage (or its configured
    weight, if higher), or at its configured weight when no stages are configured."""
    if migration.rollout is None:
        return RolloutState(phase=Phase.MANUAL, weight=migration.weight)
    first = migration.rollout.stages[0].weight
    return RolloutState(phase=Phase.PROGRESSING, weight=max(migration.weight, first))


def transition(
    state: RolloutState,
    at: float,
    phase: Phase,
    weight: float,
    reason: str,
    actor: Actor,
    kind: TransitionKind,
    *,
    failure: dict[str, Any] | None = None,
    **changes: Any,
) -> Change:
    """The transition from ``state`` to ``phase`` at ``weight``; ``changes`` are other
    fields of the new state."""
    previous = state.history[-1] if state.history else None
    made = Transition(
        at=at,
        from_phase=state.phase if previous else None,
        to_phase=phase,
        from_weight=state.weight if previous else None,
        to_weight=weight,
        reason=reason,
        actor=actor,
        kind=kind,
        failure=failure,
    )
    new = replace(
        state,
        phase=phase,
        weight=weight,
        reason=reason,
        failure=failure,
        history=[*state.history, made],
        **changes,
    )
    return made, new


def start(state: RolloutState, at: float, reason: str = "no saved state: starting") -> Change:
    """The first transition of a rollout with no saved state (``initial_state``)."""
    return transition(
        state, at, state.phase, state.weight, reason, Actor.STARTUP, TransitionKind.START
    )


def _advance(
    state: RolloutState, config: RolloutConfig | None, at: float, reason: str, actor: Actor
) -> Change:
    target = stages.next_weight(config, state.weight)
    assert target is not None and config is not None
    phase = Phase.PROMOTED if stages.is_last(config, target) else state.phase
    return transition(state, at, phase, target, reason, actor, TransitionKind.PROMOTE)


# -- the guard's ---------------------------------------------------------------------


def guard_promote(state: RolloutState, config: RolloutConfig | None, at: float) -> Change:
    """To the next stage: every check passed for the stage's hold."""
    return _advance(state, config, at, "every check passed for the stage's hold", Actor.GUARD)


def guard_rollback(state: RolloutState, at: float, verdict: Verdict) -> Change:
    """Back to legacy, the failing verdict saved with the transition."""
    value = "n/a" if verdict.value is None else f"{verdict.value:.3g}"
    reason = (
        f"{verdict.check} {value} > {verdict.threshold:g}"
        if verdict.threshold
        else (f"{verdict.check}: {verdict.detail}")
    )
    return transition(
        state, at, Phase.ROLLED_BACK, 0.0, reason, Actor.GUARD, TransitionKind.ROLLBACK,
        failure=verdict.as_dict(),
    )  # fmt: skip


# -- the operator's ------------------------------------------------------------------


def _operator(
    state: RolloutState, at: float, phase: Phase, weight: float, reason: str,
    kind: TransitionKind, **changes: Any,
) -> Change:  # fmt: skip
    return transition(state, at, phase, weight, reason, Actor.OPERATOR, kind, **changes)


def pause(state: RolloutState, at: float) -> Change:
    if state.phase != Phase.PROGRESSING:
        raise RolloutError(f"only a progressing rollout can be paused; it is {state.phase}")
    return _operator(
        state, at, Phase.PAUSED, state.weight, "paused by operator", TransitionKind.PAUSE
    )


def resume(state: RolloutState, config: RolloutConfig | None, at: float) -> Change:
    if config is None:
        raise RolloutError("no rollout stages are configured; the weight is manual")
    if state.phase != Phase.PAUSED:
        hint = " (use restart after a rollback)" if state.phase == Phase.ROLLED_BACK else ""
        raise RolloutError(f"only a paused rollout can be resumed; it is {state.phase}{hint}")
    reason = "resumed by operator"
    return _operator(state, at, Phase.PROGRESSING, state.weight, reason, TransitionKind.RESUME)


def promote(state: RolloutState, config: RolloutConfig | None, at: float) -> Change:
    if config is None:
        raise RolloutError("no rollout stages are configured; use set-weight")
    if state.phase == Phase.ROLLED_BACK:
        raise RolloutError("the rollout was rolled back; restart it first")
    if stages.next_weight(config, state.weight) is None:
        raise RolloutError(f"already at the last stage ({state.weight:g}%)")
    return _advance(state, config, at, "promoted by operator", Actor.OPERATOR)


def rollback(state: RolloutState, at: float, reason: str | None = None) -> Change:
    if state.phase == Phase.ROLLED_BACK:
        raise RolloutError("already rolled back")
    reason = reason or "rolled back by operator"
    return _operator(state, at, Phase.ROLLED_BACK, 0.0, reason, TransitionKind.ROLLBACK)


def restart(
    state: RolloutState, config: RolloutConfig | None, manual_weight: float, at: float
) -> Change:
    """Back to the first stage (or the configured weight, without stages) after a
    rollback; new's memory baseline is taken again."""
    if state.phase != Phase.ROLLED_BACK:
        raise RolloutError(f"restart is for after a rollback; the rollout is {state.phase}")
    if config is None:
        weight, phase = manual_weight, Phase.MANUAL
    else:
        weight, phase = config.stages[0].weight, Phase.PROGRESSING
    return _operator(
        state, at, phase, weight, "restarted by operator", TransitionKind.RESTART,
        baseline_memory_bytes=None,
    )  # fmt: skip


def set_weight(
    state: RolloutState, config: RolloutConfig | None, weight: float, at: float
) -> Change:
    """A weight of the operator's: it pauses a staged rollout (the next stage is the first
    one above it)."""
    if not 0 <= weight <= 100:
        raise RolloutError("weight must be between 0 and 100")
    phase = Phase.MANUAL if config is None else Phase.PAUSED
    reason = f"weight set to {weight:g}% by operator"
    return _operator(state, at, phase, weight, reason, TransitionKind.SET_WEIGHT)


# -- which readings count --------------------------------------------------------------


def opens_judging(made: Transition) -> bool:
    """Readings from before this transition are not held against new: a start, or any way
    out of ``rolled_back`` (restart, set-weight, ...)."""
    return made.kind == TransitionKind.START or made.from_phase == Phase.ROLLED_BACK


def judging_since(history: list[Transition]) -> float | None:
    """Readings from before this moment belong to an attempt that was rolled back (or to
    before this rollout began), and are not held against new: the ``at`` of the last
    transition that ``opens_judging``, if any."""
    for made in reversed(history):
        if opens_judging(made):
            return made.at
    return None
