"""The ``cutover demo`` driver's view of the admin API's ``GET /migrations`` document: which
migration a request belongs to, which one the fault goes into and when, the lines that show
each migration's progress, and when every one of them is settled. Pure functions and one
small tracker; the requests are driver_traffic's."""

from __future__ import annotations

from collections import Counter
from typing import Any

from cutover.vocabulary import Actor, Phase

Migration = dict[str, Any]  # one migration's document, as GET /migrations lists it
OUTSIDE = "none"  # a request no migration matches (as the gateway's metrics label it)
SETTLED = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK})


def under(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or below it on a segment boundary, as the gateway matches."""
    return path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def migration_of(method: str, path: str, migrations: list[Migration]) -> str:
    """The name of the migration the gateway routes this request by: the longest matching
    prefix whose methods (none listed: all) include ``method``."""
    best: Migration | None = None
    for migration in migrations:
        match = migration["match"]
        methods = match.get("methods")
        if not under(path, match["prefix"]) or (methods and method.upper() not in methods):
            continue
        if best is None or len(match["prefix"]) > len(best["match"]["prefix"]):
            best = migration
    return OUTSIDE if best is None else best["name"]


def has_rollout(migration: Migration) -> bool:
    return bool(migration.get("stages"))


def fault_target(migrations: list[Migration]) -> Migration | None:
    """The migration the demo's fault goes into: the first with a rollout."""
    return next((m for m in migrations if has_rollout(m)), None)


def fault_weight(migration: Migration) -> float:
    """The weight at which the fault goes in: the second stage's (50 % in the examples),
    the only stage's when there is one."""
    stages = migration["stages"]
    return stages[min(1, len(stages) - 1)]["weight"]


def fault_due(migration: Migration) -> bool:
    return migration["phase"] == Phase.PROGRESSING and migration["weight"] >= fault_weight(
        migration
    )


def settled(migrations: list[Migration]) -> bool:
    """Every migration with a rollout is promoted or rolled back (and there is one)."""
    rolling = [m for m in migrations if has_rollout(m)]
    return bool(rolling) and all(m["phase"] in SETTLED for m in rolling)


def stage_text(migration: Migration) -> str:
    stages, index = migration.get("stages") or [], migration.get("stage")
    if not stages:
        return "manual"
    return f"stage {'-' if index is None else index + 1}/{len(stages)}"


def progress_line(elapsed: float, migration: Migration, served: Counter[str]) -> str:
    """Where one migration is: phase, weight, stage, who served it since the last line, and
    its latest checks."""
    checks = " ".join(f"{name}={c['result']}" for name, c in migration["checks"].items())
    line = (
        f"t={elapsed:4.0f}s  {migration['name']:<14} {migration['phase']:<11} "
        f"weight={migration['weight']:5.1f}%  {stage_text(migration):<9}  "
        f"legacy={served['legacy']:4d} new={served['new']:4d} failed={served['failed']:3d}"
    )
    return f"{line}  {checks}" if checks else line


def transition_line(name: str, transition: dict[str, Any]) -> str:
    return (
        f"  >>> {name}: {transition['from_phase']} {transition['from_weight']:g}% -> "
        f"{transition['to_phase']} {transition['to_weight']:g}%: "
        f"{transition['reason']} ({transition['actor']})"
    )


def settled_line(migrations: list[Migration]) -> str:
    ends = ", ".join(f"{m['name']} {m['phase']}" for m in migrations if has_rollout(m))
    return f"demo: every migration is settled: {ends}"


class Progress:
    """What the demo has shown of each migration, so it prints a migration's line when its
    phase, weight or stage changes (and every REFRESH seconds while it is still moving, so
    its traffic and checks stay in view), and each transition once."""

    REFRESH = 5.0

    def __init__(self) -> None:
        self._shown: dict[str, tuple[Any, ...]] = {}
        self._shown_at: dict[str, float] = {}
        self._history_seen: dict[str, int] = {}
        self._served: dict[str, Counter[str]] = {}

    def served(self, migration: str, outcome: str) -> None:
        """One request of ``migration`` served by ``outcome`` (a backend, or "failed")."""
        self._served.setdefault(migration, Counter())[outcome] += 1

    def lines(self, elapsed: float, migrations: list[Migration]) -> list[str]:
        lines = []
        for migration in migrations:
            name = migration["name"]
            history = migration.get("history") or []
            for transition in history[self._history_seen.get(name, 0) :]:
                if transition["actor"] != Actor.STARTUP:
                    lines.append(transition_line(name, transition))
            self._history_seen[name] = len(history)
            key = (migration["phase"], migration["weight"], migration.get("stage"))
            stale = (
                migration["phase"] not in SETTLED
                and elapsed - self._shown_at.get(name, elapsed) >= self.REFRESH
            )
            if self._shown.get(name) != key or stale:
                self._shown[name], self._shown_at[name] = key, elapsed
                served = self._served.pop(name, Counter())
                lines.append(progress_line(elapsed, migration, served))
        return lines
