"""The usage report (cutover.usage.report): per client, since a time, in three formats."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cutover.usage.report import ReportFormat, SinceError, parse_since, render, usage_document
from tests.usage.rows import DAY1, row


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800),
                          ("2w", 1209600), ("1.5h", 5400)],
)  # fmt: skip
def test_since(text: str, seconds: float) -> None:
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "0d", "-1d", "7y", "d7"])
def test_a_bad_since(text: str) -> None:
    with pytest.raises(SinceError, match="such as 7d"):
        parse_since(text)


ROWS = [
    row("partner-a", count=5, brownouts=2, first=DAY1 + 10, last=DAY1 + 50, agent="sdk/1"),
    row("partner-a", method="POST", count=3, first=DAY1 + 5, last=DAY1 + 90, agent="sdk/2"),
    row("h:" + "a" * 32, count=1, hint="0042", agent=None),
    row("partner-a", migration="strategies", prefix="/s", count=1),
]


def test_one_entry_per_client_busiest_first() -> None:
    clients = usage_document(None, "7d", ROWS)["clients"]
    assert [(c["migration"], c["client"], c["calls"]) for c in clients] == [
        ("trade-engine", "partner-a", 8), ("strategies", "partner-a", 1),
        ("trade-engine", "h:" + "a" * 32, 1),
    ]  # fmt: skip
    first = clients[0]
    assert first["brownouts"] == 2
    assert first["endpoints"] == ["GET /api/v1", "POST /api/v1"]
    assert first["user_agent"] == "sdk/2"
    assert first["first_seen"].endswith("Z")
    assert clients[2]["hint"] == "0042"


def test_json_csv_and_table() -> None:
    document = usage_document("trade-engine", "7d", ROWS[:3])
    assert json.loads(render(document, ReportFormat.JSON)) == document
    table = list(csv.DictReader(io.StringIO(render(document, ReportFormat.CSV))))
    assert [(r["client"], r["calls"], r["endpoints"]) for r in table] == [
        ("partner-a", "8", "GET /api/v1 POST /api/v1"), ("h:" + "a" * 32, "1", "GET /api/v1"),
    ]  # fmt: skip
    lines = render(document, ReportFormat.TABLE).splitlines()
    assert lines[0].split()[:4] == ["MIGRATION", "CLIENT", "HINT", "CALLS"]
    assert lines[1].split()[:3] == ["trade-engine", "partner-a", "8"]
    assert "0042" in lines[2]


def test_an_empty_table_says_so() -> None:
    document = usage_document("trade-engine", "7d", [])
    assert render(document, ReportFormat.TABLE) == (
        "no client called the old API of trade-engine since 7d"
    )
