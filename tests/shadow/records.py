"""A mismatch record as the dual run writes it, for the log's and the report's tests."""

from __future__ import annotations

from typing import Any

from cutover.shadow.compare import Diff
from cutover.shadow.log import mismatch_record

EXECUTE = "/api/v1/backtests/bt-1/execute"


def record(
    *,
    run_id: str = "run-a",
    diffs: list[Diff] | None = None,
    totals: dict[str, int] | None = None,
    method: str = "POST",
    path: str = EXECUTE,
    statuses: tuple[int, int] = (200, 200),
    at: float = 1714564800.5,
) -> dict[str, Any]:
    return mismatch_record(
        migration="trade-engine",
        route="backtests",
        method=method,
        path=path,
        query="verbose=1",
        headers=[("Content-Type", "application/json"), ("Authorization", "Bearer s3cret")],
        primary_backend="legacy",
        primary_status=statuses[0],
        shadow_backend="new",
        shadow_status=statuses[1],
        diffs=diffs if diffs is not None else [Diff("$.sharpe_ratio", 1.0, 1.05, "value")],
        totals=totals or {"match": 1, "mismatch": 1, "error": 0, "dropped": 0},
        run_id=run_id,
        at=at,
    )
