"""Migration documents as the admin API's GET /migrations lists them (the fields the demo
reads), for the driver's tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Migration = dict[str, Any]


def doc(
    name: str,
    prefix: str,
    *,
    methods: list[str] | None = None,
    phase: str = "progressing",
    weight: float = 10.0,
    stage: int | None = 0,
    stages: Sequence[float] = (10, 50, 100),
    history: Sequence[dict[str, Any]] = (),
    checks: dict[str, dict[str, Any]] | None = None,
) -> Migration:
    """A migration's document as GET /migrations lists it (the fields the demo reads)."""
    return {
        "name": name,
        "match": {"prefix": prefix, "methods": methods},
        "from": "legacy",
        "to": "new",
        "phase": phase,
        "weight": weight,
        "stage": stage,
        "stages": [{"weight": w, "hold": 8.0} for w in stages],
        "checks": checks if checks is not None else {"error_rate": {"result": "pass"}},
        "history": list(history),
    }


def transition(
    to_weight: float, *, actor: str = "guard", to_phase: str = "progressing"
) -> dict[str, Any]:
    return {"from_phase": "progressing", "from_weight": 10.0, "to_phase": to_phase,
            "to_weight": to_weight, "reason": "every check passed", "actor": actor}  # fmt: skip


def two() -> list[Migration]:
    return [
        doc("trade-engine", "/api/v1/backtests/", methods=["POST"]),
        doc("strategies", "/api/v1/strategies", weight=25, stages=(25, 100)),
    ]
