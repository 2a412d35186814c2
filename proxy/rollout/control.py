"""The migrations as an operator drives and sees them: the one object the admin API (what
the ``cutover`` CLI talks to) and the gateway share.

Each operator action runs on the latest saved state, under the state lock: another worker
process may have changed the state since this one last looked. The action saves its
transition before applying it, so SaveError (or StateError, when the file cannot be read)
means nothing changed; RolloutError means the phase does not allow it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from cutover.rollout.coordination import Coordinator
from cutover.rollout.guard import Guard
from cutover.rollout.machine import Rollout
from cutover.rollout.registry import Migrations
from cutover.rollout.state import Transition
from cutover.rollout.store_errors import StateConflict
from cutover.vocabulary import Phase, Role

T = TypeVar("T")
CONFLICT_RETRIES = 3


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
        migrations: Migrations,
        coordination: Coordinator,
        *,
        describe: Callable[[str], dict[str, Any]] = lambda name: {},
    ) -> None:
        """``describe``: a migration's configured part of its document (its match, its
        backends, its ``to``'s circuit breaker); a reload changes it, hence a callable."""
        self.migrations = migrations
        self.coordination = coordination
        self.describe = describe
        # The guard this process runs, set by whoever runs it: with several workers the
        # status shows the leader's latest evaluation through it.
        self.guard: Guard | None = None
        self.ready = False  # started and not stopping: what /readyz answers

    @property
    def names(self) -> list[str]:
        return self.migrations.names

    async def _act(self, name: str, action: Callable[[Rollout], Awaitable[T]]) -> T:
        """The action on the latest saved state. One that loses a race with another host
        (StateConflict) is decided again on what that host wrote: RolloutError (409) if the
        phase no longer allows it."""
        self.migrations.get(name)  # UnknownMigration before waiting for the lock
        async with self.coordination.locked():
            for attempt in range(CONFLICT_RETRIES):
                await self.migrations.sync()
                try:
                    return await action(self.migrations.get(name))
                except StateConflict:
                    if attempt == CONFLICT_RETRIES - 1:
                        raise
            raise AssertionError("unreachable")

    # -- the operator's actions (UnknownMigration for a name not configured) -------------

    async def pause(self, name: str, *, role: Role | None = None) -> Transition:
        return await self._act(name, lambda rollout: rollout.pause(role))

    async def resume(self, name: str, *, role: Role | None = None) -> Transition:
        return await self._act(name, lambda rollout: rollout.resume(role))

    async def promote(self, name: str, *, role: Role | None = None) -> Transition:
        return await self._act(name, lambda rollout: rollout.promote(role))

    async def rollback(
        self, name: str, reason: str | None = None, *, role: Role | None = None
    ) -> Transition:
        return await self._act(name, lambda rollout: rollout.rollback(reason, role))

    async def restart(self, name: str, *, role: Role | None = None) -> Transition:
        return await self._act(name, lambda rollout: rollout.restart(role))

    async def set_weight(self, name: str, weight: float, *, role: Role | None = None) -> Transition:
        return await self._act(name, lambda rollout: rollout.set_weight(weight, role))

    # -- what the operator sees ----------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        """One migration's document: its configuration, its rollout, its breaker."""
        rollout = self.migrations.get(name)
        return {"name": name, **self.describe(name), **rollout_status(rollout)}

    async def follow(self) -> None:
        """Take the guard's latest evaluations, even when another worker made them."""
        if self.guard is not None:
            await self.guard.follow()

    async def current_status(self, name: str) -> dict[str, Any]:
        await self.follow()
        return self.status(name)

    async def current_statuses(self) -> list[dict[str, Any]]:
        await self.follow()
        return [self.status(name) for name in self.names]
