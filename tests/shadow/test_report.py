import argparse
import json
from dataclasses import fields
from pathlib import Path

import pytest

from cutover.shadow.compare import Diff
from cutover.shadow.log import ShadowLog, totals_record
from cutover.shadow.report import (
    Example,
    ResultCounts,
    add_diff_report_command,
    format_report,
    log_files,
    read_lines,
    summarize,
)
from cutover.vocabulary import ShadowResult
from tests.shadow.records import EXECUTE, record


def run_report(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cutover")
    add_diff_report_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["diff-report", *argv])
    return args.func(args)


def write_synthetic_log(path: Path) -> None:
    """Run a: 3 samples, last totals 90 match / 3 mismatch. Run b (after a restart): 2 samples,
    last totals 48 / 2. Two malformed lines and a blank one. Rotated into a backup."""
    sharpe = Diff("$.sharpe_ratio", 1.25, 1.3125, "value")
    trades = Diff("$.total_trades", 12, 18, "value")
    lines = [
        record(run_id="a", diffs=[sharpe], totals={"match": 10, "mismatch": 1}),
        record(
            run_id="a",
            diffs=[Diff("$", 200, 500, "status")],
            statuses=(200, 500),
            totals={"match": 40, "mismatch": 2, "error": 1},
        ),
        record(
            run_id="a",
            diffs=[sharpe, trades],
            path="/api/v1/backtests/bt-9/execute",
            totals={"match": 90, "mismatch": 3, "error": 1},
        ),
        record(run_id="b", diffs=[sharpe, trades], totals={"match": 5, "mismatch": 1}),
        record(
            run_id="b",
            diffs=[Diff("$.engine", "<missing>", "trade-engine", "extra key")],
            totals={"match": 48, "mismatch": 2, "dropped": 4},
        ),
    ]
    texts = [json.dumps(line) for line in lines]
    path.with_name(path.name + ".1").write_text("\n".join(texts[:2]) + "\nnot json at all\n")
    path.write_text("\n".join(texts[2:]) + '\n\n{"diffs": 5}\n' + texts[0][:40] + "\n")


def test_summary_of_synthetic_log(tmp_path: Path) -> None:
    path = tmp_path / "shadow.jsonl"
    write_synthetic_log(path)
    report = summarize(read_lines(log_files(path)))
    assert report.samples == 5
    assert report.malformed == 3
    assert report.runs == 2
    assert report.totals == ResultCounts(match=138, mismatch=5, error=1, dropped=4)
    assert report.comparisons == 143
    assert report.mismatch_rate == pytest.approx(5 / 143)
    assert report.status_samples == 1
    assert [(p.path, p.count) for p in report.paths] == [
        ("$.sharpe_ratio", 3),
        ("$.total_trades", 2),
        ("$", 1),
        ("$.engine", 1),
    ]
    assert report.paths[0].example == Example(1.25, 1.3125, "value", "POST", EXECUTE)
    trades = report.paths[1].example
    assert (trades.primary, trades.shadow, trades.path) == (
        12,
        18,
        "/api/v1/backtests/bt-9/execute",
    )


def test_report_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "shadow.jsonl"
    write_synthetic_log(path)
    assert run_report("--log", str(path), "--top", "3") == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "mismatch samples  5",
        "comparisons       143 in 2 runs",
        "mismatch rate     3.50% (5 of 143)",
        "shadow errors     1, dropped 4",
        "status mismatches 1 of 5 samples (20.00%)",
        "malformed lines   3 skipped",
        "top 3 of 4 differing paths",
        "  3  $.sharpe_ratio  (value)",
        f"       e.g. primary 1.25 vs shadow 1.3125  (POST {EXECUTE})",
        "  2  $.total_trades  (value)",
        "       e.g. primary 12 vs shadow 18  (POST /api/v1/backtests/bt-9/execute)",
        "  1  $  (status)",
        f"       e.g. primary 200 vs shadow 500  (POST {EXECUTE})",
    ]
    print(out)


def test_report_without_totals_says_unknown() -> None:
    line = record()
    del line["totals"]
    report = summarize([json.dumps(line)])
    assert report.totals is None
    assert report.comparisons is None
    assert report.mismatch_rate is None
    text = format_report(report, 10)
    assert "comparisons       unknown" in text
    assert "mismatch rate     unknown" in text
    assert "differing paths" in text


def test_report_uses_the_last_line_of_each_run() -> None:
    lines = [
        json.dumps(record(run_id="a", totals={"match": 100, "mismatch": 9})),
        json.dumps(record(run_id="b", totals={"match": 1, "mismatch": 1})),
        json.dumps(record(run_id="a", totals={"match": 200, "mismatch": 10})),
    ]
    assert summarize(lines).totals == ResultCounts(match=201, mismatch=11)


def test_a_runs_closing_totals_line_counts_but_is_not_a_sample() -> None:
    lines = [
        json.dumps(record(run_id="a", totals={"match": 10, "mismatch": 1})),
        json.dumps(totals_record(totals={"match": 50, "mismatch": 1}, run_id="a", at=0)),
    ]
    report = summarize(lines)
    assert (report.samples, report.malformed, report.runs) == (1, 0, 1)
    assert report.totals == ResultCounts(match=50, mismatch=1)
    assert [entry.path for entry in report.paths] == ["$.sharpe_ratio"]


@pytest.mark.parametrize(
    "line",
    [
        "[]",
        '"text"',
        "{}",
        '{"diffs": [1]}',
        '{"diffs": [{"path": 3}]}',
        '{"diffs": [], "run_id": 7}',
        '{"diffs": [], "totals": {"match": -1}}',
        '{"diffs": [], "totals": {"match": true}}',
        '{"diffs": [], "totals": [1]}',
        "{" * 100_000,
    ],
)
def test_malformed_lines_are_counted(line: str) -> None:
    report = summarize([line, json.dumps(record())])
    assert (report.samples, report.malformed) == (1, 1)


def test_missing_log_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_report("--log", str(tmp_path / "nope.jsonl")) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"no shadow log at {tmp_path / 'nope.jsonl'}" in captured.err


def test_default_log_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_report() == 1
    assert "cutover-shadow.jsonl" in capsys.readouterr().err
    (tmp_path / "cutover-shadow.jsonl").write_text(json.dumps(record()) + "\n")
    assert run_report() == 0
    assert "mismatch samples  1" in capsys.readouterr().out


def test_unreadable_log_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    assert run_report("--log", str(tmp_path / "dir.jsonl")) == 1
    assert "cannot read" in capsys.readouterr().err


def test_empty_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "shadow.jsonl"
    ShadowLog(path).close()
    assert path.exists()
    assert run_report("--log", str(path)) == 0
    assert capsys.readouterr().out == "no mismatches recorded\n"
    path.write_text("garbage\n\n")
    assert run_report("--log", str(path)) == 0
    assert capsys.readouterr().out == "no mismatches recorded\nmalformed lines   1 skipped\n"


def test_backups_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "shadow.jsonl"
    path.with_name("shadow.jsonl.1").write_text(json.dumps(record()) + "\n")
    assert run_report("--log", str(path)) == 0
    assert "mismatch samples  1" in capsys.readouterr().out


@pytest.mark.parametrize("top", ["0", "-1", "x"])
def test_top_must_be_positive(top: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_report("--top", top)
    assert "positive integer" in capsys.readouterr().err


def test_result_counts_have_a_field_per_shadow_result() -> None:
    assert [field.name for field in fields(ResultCounts)] == list(ShadowResult)
    assert ResultCounts(1, 2, 3, 4) + ResultCounts(dropped=1) == ResultCounts(1, 2, 3, 5)
