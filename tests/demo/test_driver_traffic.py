"""cutover_demo.new_backend.driver_traffic: the requests it sends and the lines it prints."""

from __future__ import annotations

import re
from collections import Counter

from cutover_demo.new_backend.driver_traffic import (
    STRATEGIES,
    SYMBOLS,
    execute_request,
    status_line,
    transition_line,
)


def test_an_execute_request() -> None:
    path, body = execute_request()
    assert re.fullmatch(r"/api/v1/backtests/bt-\d+/execute", path)
    assert body["strategy"] in STRATEGIES and body["symbol"] in SYMBOLS


def test_the_lines_it_prints() -> None:
    transition = {"from_phase": "progressing", "from_weight": 10.0, "to_phase": "progressing",
                  "to_weight": 50.0, "reason": "every check passed", "actor": "guard"}  # fmt: skip
    assert transition_line(transition) == (
        "  >>> progressing 10% -> progressing 50%: every check passed (guard)"
    )
    status = {
        "phase": "progressing",
        "weight": 50.0,
        "checks": {"error_rate": {"result": "pass"}, "memory": {"result": "nodata"}},
    }
    served = Counter({"legacy": 12, "new": 9, "failed": 1})
    assert status_line(3.2, status, served) == (
        "t=   3s  progressing weight= 50.0%  legacy= 12 new=  9 failed= 1  "
        "error_rate=pass memory=nodata"
    )
