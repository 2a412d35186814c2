"""The rollout as an operator drives and sees it: the one object the admin API (what the
``cutover`` CLI talks to) and the gateway share.

Each operator action runs on the latest saved state, under the state lock: another worker
process may have changed the state since this one last looked. The action saves its
transition before applying it, so SaveError (or StateError, when the file cannot be read)
means nothing changed; RolloutError means the phase does not allow it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from cutover.rollout.coordination import Coordination
from cutover.rollout.guard import Guard
from cutover.rollout.machine import Rollout
from cutover.rollout.state import Transition
from cutover.vocabulary import Phase

T = TypeVar("T")


def iso(at: float) -> str:
    """A transition's wall-clock time as shown: ISO 8601, UTC, to the millisecond."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rollout_status(rollout: Rollout) -> dict[str, Any]:
    """The rollout's part of the status document: phase, stages, hold, checks, history."""
    config, state = rollout.config, rollout.state
    healthy_for = rollout.healthy_for()
    next_in = None
    hold = rollout.hold()
    if (
        rollout.phase == Phase.PROGRESSING
        and hold is not None
        and rollout.next_weight() is not None
    ):
        next_in = max(0.0, hold - healthy_for) if healthy_for is not None else None
    return {
        "phase": rollout.phase,
        "weight": rollout.weight,
        "stage": rollout.stage(),
        "stages": []
        if config is None
        else [
            {"weight": s.weight, "hold": config.hold_for(i)} for i, s in enumerate(config.stages)
        ],
        "reason": state.reason,
        "failure": state.failure,
        "healthy_for": healthy_for,
        "next_promotion_in": next_in,
        "consecutive_failures": rollout.consecutive_failures,
        "baseline_memory_bytes": state.baseline_memory_bytes,
        "checks": {
            name: {k: v for k, v in verdict.as_dict().items() if k != "check"}
            for name, verdict in rollout.latest.items()
        },
        "history": [{**vars(t), "at": iso(t.at)} for t in state.history],
    }


class Control:
    def __init__(
        self,
        rollout: Rollout,
        coordination: Coordination,
        *,
        breaker_status: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        """``breaker_status``: the circuit breaker's part of the status document (None
        without a breaker); the breaker is rebuilt by a reload, hence a callable."""
        self.rollout = rollout
        self.coordination = coordination
        self.breaker_status = breaker_status
        # The guard this process runs, set by whoever runs it: with several workers the
        # status shows the leader's latest evaluation through it.
        self.guard: Guard | None = None
        self.ready = False  # started and not stopping: what /readyz answers

    async def _act(self, action: Callable[[], Awaitable[T]]) -> T:
        async with self.coordination.locked():
            await self.rollout.sync()
            return await action()

    # -- the operator's actions --------------------------------------------------------

    async def pause(self) -> Transition:
        return await self._act(self.rollout.pause)

    async def resume(self) -> Transition:
        return await self._act(self.rollout.resume)

    async def promote(self) -> Transition:
        return await self._act(self.rollout.promote)

    async def rollback(self, reason: str | None = None) -> Transition:
        return await self._act(lambda: self.rollout.rollback(reason))

    async def restart(self) -> Transition:
        return await self._act(self.rollout.restart)

    async def set_weight(self, weight: float) -> Transition:
        return await self._act(lambda: self.rollout.set_weight(weight))

    # -- what the operator sees ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The status document: the rollout, plus the circuit breaker."""
        return {**rollout_status(self.rollout), "breaker": self.breaker_status()}

    async def current_status(self) -> dict[str, Any]:
        """``status()``, with the guard's latest evaluation even when another worker made it."""
        if self.guard is not None:
            await self.guard.follow()
        return self.status()
