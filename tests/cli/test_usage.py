"""``cutover usage`` (cutover.cli.usage) against a mocked admin API: what it asks for, and the
report in each format."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Iterator

import pytest
import respx

from cutover.cli.commands import EXIT_FAILED
from cutover.cli.usage import add_usage_command
from tests.cli.answers import problem

ADMIN_URL = "http://admin.test"
REPORT = {
    "migration": "strategies",
    "since": "7d",
    "clients": [
        {"migration": "strategies", "client": "h:" + "a" * 32, "hint": "0042", "calls": 12,
         "brownouts": 3, "first_seen": "2026-11-30T10:00:00Z",
         "last_seen": "2026-12-01T09:00:00Z", "user_agent": "sdk/1.0",
         "endpoints": ["GET /api/v1/strategies", "POST /api/v1/strategies"]},
    ],
}  # fmt: skip


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cutover")
    add_usage_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    monkeypatch.setenv("CUTOVER_ADMIN_URL", ADMIN_URL)
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", "s3cret")
    with respx.mock(base_url=ADMIN_URL, assert_all_called=True) as router:
        yield router


def test_one_migration_as_a_table(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = admin.get("/migrations/strategies/usage", params={"since": "7d"}).respond(json=REPORT)
    assert run("usage", "strategies") == 0
    assert route.calls.last.request.headers["authorization"] == "Bearer s3cret"
    header, line = capsys.readouterr().out.splitlines()
    assert header.split()[:5] == ["MIGRATION", "CLIENT", "HINT", "CALLS", "BROWNOUTS"]
    assert line.split()[:5] == ["strategies", "h:" + "a" * 32, "0042", "12", "3"]


def test_every_migration_as_csv_and_json(
    admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.get("/usage", params={"since": "30d"}).respond(json={**REPORT, "migration": None})
    assert run("usage", "--since", "30d", "--format", "csv") == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert (row["client"], row["calls"], row["last_seen"]) == (
        "h:" + "a" * 32, "12", "2026-12-01T09:00:00Z",
    )  # fmt: skip
    assert run("usage", "--since", "30d", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["clients"] == REPORT["clients"]


def test_a_refusal_is_printed(admin: respx.MockRouter, capsys: pytest.CaptureFixture[str]) -> None:
    detail = "migration 'trade-engine' has no deprecation: its calls are not counted"
    admin.get("/migrations/trade-engine/usage").mock(return_value=problem(409, detail))
    assert run("usage", "trade-engine") == EXIT_FAILED
    assert detail in capsys.readouterr().err


def test_a_bad_since_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run("usage", "--since", "soon")
    assert exit_.value.code == 2
    assert "such as 7d" in capsys.readouterr().err
