"""What the admin API answers, for the CLI's tests: migration documents, the list of them (one
migration, or several), a problem."""

from __future__ import annotations

from typing import Any

import httpx

MIGRATION: dict[str, Any] = {
    "name": "trade-engine",
    "match": {"prefix": "/api/v1/backtests/", "methods": ["POST"]},
    "from": "legacy",
    "to": "engine-v2",  # not "new": what the CLI prints must come from the document
    "phase": "progressing",
    "weight": 50.0,
    "stage": 1,
    "stages": [
        {"weight": 10.0, "hold": 300.0},
        {"weight": 50.0, "hold": 600.0},
        {"weight": 100.0, "hold": 300.0},
    ],
    "reason": "stage 1 healthy for 5m",
    "failure": {
        "check": "latency",
        "value": 0.91,
        "threshold": 0.5,
        "detail": "p95 910ms over 500ms",
    },
    "healthy_for": 100.0,
    "next_promotion_in": 200.0,
    "checks": {
        "error_rate": {"result": "pass", "value": 0.01, "threshold": 0.05, "detail": "1 of 100"},
        "latency": {"result": "fail", "value": 0.91, "threshold": 0.5, "detail": "p95 910ms"},
        "memory": {"result": "nodata", "value": None, "threshold": 536870912, "detail": ""},
    },
    "history": [
        {
            "at": f"2026-11-21T23:5{i}:00Z",
            "from_phase": "progressing",
            "to_phase": "progressing",
            "from_weight": float(i),
            "to_weight": float(i + 1),
            "reason": f"step {i}",
            "actor": "guard",
        }
        for i in range(7)
    ],
    "breaker": None,
}

# A second migration, quiet: a manual weight, no rollout, no checks yet.
STRATEGIES: dict[str, Any] = {
    **MIGRATION,
    "name": "strategies",
    "match": {"prefix": "/api/v1/strategies", "methods": None},
    "to": "new",
    "phase": "manual",
    "weight": 0.0,
    "stage": None,
    "stages": [],
    "reason": None,
    "failure": None,
    "healthy_for": None,
    "next_promotion_in": None,
    "checks": {},
    "history": [],
}

ONE = {"migrations": [MIGRATION]}
SEVERAL = {"migrations": [MIGRATION, STRATEGIES]}


def problem(status: int, detail: str) -> httpx.Response:
    body = {"type": "urn:cutover:problem:x", "title": "Nope", "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})
