"""What the admin API answers, for the CLI's tests: migration documents, the list of them (one
migration, or several), the fleet (on Redis, on the file, with Redis unreachable), a problem."""

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


def host(name: str, ago: float, *, local: bool = False) -> dict[str, Any]:
    return {
        "id": name,
        "proxy": f"{name}.lan:8080",
        "admin": f"{name}.lan:9180",
        "version": "0.4.1",
        "started_at": "2026-11-21T20:00:00.000Z",
        "last_seen": "2026-11-21T23:59:59.000Z",
        "last_seen_ago": ago,
        "local": local,
    }


FLEET: dict[str, Any] = {
    "backend": "redis",
    "hosts": [host("proxy-a", 0.4, local=True), host("proxy-b", 1.2), host("proxy-c", 2.6)],
    "leader": {"host": "proxy-b", "epoch": 7},
    "store": {"up": True, "url": "redis://redis.lan:6379/0"},
}
FILE_FLEET: dict[str, Any] = {
    "backend": "file",
    "hosts": [host("proxy-a", 0.0, local=True)],
    "leader": {"host": "proxy-a", "epoch": None},
    "store": {"up": True, "url": None, "path": "/var/lib/cutover/state.json"},
}
UNREACHABLE_DETAIL = "the state store redis://redis.lan:6379/0 is unreachable: Connection refused"


def fleet_unavailable() -> httpx.Response:
    """GET /fleet while Redis is down: a problem carrying what the host knows by itself."""
    body = {
        "type": "urn:cutover:problem:state-unavailable",
        "title": "Service Unavailable",
        "status": 503,
        "detail": UNREACHABLE_DETAIL,
        "backend": "redis",
        "hosts": [host("proxy-a", 0.0, local=True)],
        "leader": None,
        "store": {"up": False, "url": "redis://redis.lan:6379/0"},
    }
    return httpx.Response(503, json=body, headers={"content-type": "application/problem+json"})
