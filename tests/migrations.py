"""The two migrations of the demo's config, as tests write them into configs."""

from __future__ import annotations

TRADE_ENGINE = {
    "name": "trade-engine",
    "match": {"prefix": "/api/v1/backtests/", "methods": ["POST"]},
    "from": "legacy",
    "to": "new",
    "rollout": {"stages": [10, 50, 100], "hold": 300},
}
STRATEGIES = {
    "name": "strategies",
    "match": {"prefix": "/api/v1/strategies"},
    "from": "legacy",
    "to": "new",
    "rollout": {"stages": [25, 100], "hold": 600},
}
