import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cutover.shadow.compare import Diff
from cutover.shadow.log import REDACTED, ShadowLog, mismatch_record, redact_headers
from cutover.shadow.report import (
    Example,
    Totals,
    add_diff_report_command,
    format_report,
    log_files,
    read_lines,
    summarize,
)

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


def run_report(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cutover")
    add_diff_report_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["diff-report", *argv])
    return args.func(args)


# The log


def test_lines_are_json_objects(tmp_path: Path) -> None:
    path = tmp_path / "shadow.jsonl"
    with ShadowLog(path) as log:
        log.write(record())
        log.write({"note": 'ünïcode and 100% "quotes" %s', "n": [1, 2.5, None]})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first == json.loads(json.dumps(record()))
    assert second == {"note": 'ünïcode and 100% "quotes" %s', "n": [1, 2.5, None]}
    assert all(line.isascii() for line in lines)


def test_mismatch_record_shape() -> None:
    line = record(
        diffs=[Diff("$", 200, 500, "status")],
        statuses=(200, 500),
        totals={"match": 7, "mismatch": 2, "error": 1},
    )
    assert line == {
        "at": "2024-05-01T12:00:00.500Z",
        "run_id": "run-a",
        "route": "backtests",
        "method": "POST",
        "path": EXECUTE,
        "query": "verbose=1",
        "headers": [["Content-Type", "application/json"], ["Authorization", REDACTED]],
        "primary": {"backend": "legacy", "status": 200},
        "shadow": {"backend": "new", "status": 500},
        "diffs": [{"path": "$", "primary": 200, "shadow": 500, "reason": "status"}],
        "totals": {"match": 7, "mismatch": 2, "error": 1, "dropped": 0},
    }
    assert record(at=0)["at"] == "1970-01-01T00:00:00.000Z"
    json.dumps(line, allow_nan=False)


def test_headers_redacted() -> None:
    headers = [
        ("Authorization", "Bearer abc"),
        ("proxy-authorization", "Basic xyz"),
        ("COOKIE", "session=1"),
        ("Set-Cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("X-Request-Id", "r-1"),
        ("Accept", "application/json"),
    ]
    assert redact_headers(headers) == [
        ("Authorization", REDACTED),
        ("proxy-authorization", REDACTED),
        ("COOKIE", REDACTED),
        ("Set-Cookie", REDACTED),
        ("set-cookie", REDACTED),
        ("X-Request-Id", "r-1"),
        ("Accept", "application/json"),
    ]
    assert redact_headers(iter([])) == []


def test_written_headers_are_redacted(tmp_path: Path) -> None:
    path = tmp_path / "shadow.jsonl"
    with ShadowLog(path) as log:
        log.write(record())
    text = path.read_text(encoding="utf-8")
    assert "s3cret" not in text
    assert REDACTED in text


def test_rotation_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "shadow.jsonl"
    max_bytes = 2000
    with ShadowLog(path, max_bytes=max_bytes, backups=2) as log:
        for seq in range(200):
            log.write({**record(), "seq": seq})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [".__shadow.jsonl.lock", "shadow.jsonl", "shadow.jsonl.1", "shadow.jsonl.2"]
    longest = max(len(json.dumps({**record(), "seq": 199}, separators=(",", ":"))) + 1, 0)
    for file in log_files(path):
        assert file.stat().st_size <= max_bytes + longest  # it rotates once past max_bytes
        assert all(json.loads(line) for line in file.read_text().splitlines())
    # backups oldest first, then the current file: the sequence is in order and ends last
    assert log_files(path) == [path.with_name(f"shadow.jsonl.{n}") for n in (2, 1)] + [path]
    seqs = [json.loads(line)["seq"] for line in read_lines(log_files(path))]
    assert seqs == list(range(seqs[0], 200))
    assert 0 < len(seqs) < 200


WRITER = """
import sys
from pathlib import Path
from cutover.shadow.log import ShadowLog

path, writer = Path(sys.argv[1]), int(sys.argv[2])
with ShadowLog(path, max_bytes=20_000, backups=40) as log:
    for seq in range(300):
        log.write({"writer": writer, "seq": seq, "pad": "x" * 200})
"""


def test_worker_processes_share_one_log_without_losing_lines(tmp_path: Path) -> None:
    """``--workers 4``: each process appends to the same log and rotates it. With one
    RotatingFileHandler per process, each rotated by its own idea of the size, renaming
    files the others were still writing to (lines landed in backups out of order, and
    backups were overwritten)."""
    path = tmp_path / "shadow.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)]) for n in range(4)
    ]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0, 0, 0]
    files = log_files(path)
    assert 5 < len(files) <= 41
    lines = [json.loads(line) for line in read_lines(files)]
    for n in range(4):  # every line once, and each writer's lines in order
        assert [line["seq"] for line in lines if line["writer"] == n] == list(range(300))
    for file in files:
        assert file.stat().st_size <= 20_000 + 300  # past the limit by at most one line


def test_logger_is_private_and_per_instance(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.CRITICAL)
    with ShadowLog(tmp_path / "a.jsonl") as a, ShadowLog(tmp_path / "b.jsonl") as b:
        a.write({"log": "a"})
        b.write({"log": "b"})
    assert caplog.records == []
    assert (tmp_path / "a.jsonl").read_text() == '{"log":"a"}\n'
    assert (tmp_path / "b.jsonl").read_text() == '{"log":"b"}\n'


def test_closed_log_refuses_writes(tmp_path: Path) -> None:
    log = ShadowLog(tmp_path / "shadow.jsonl")
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.write({})


@pytest.mark.parametrize(("max_bytes", "backups"), [(0, 3), (100, 0)])
def test_unbounded_settings_rejected(tmp_path: Path, max_bytes: int, backups: int) -> None:
    with pytest.raises(ValueError):
        ShadowLog(tmp_path / "shadow.jsonl", max_bytes=max_bytes, backups=backups)


# The report


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
    assert report.totals == Totals(match=138, mismatch=5, error=1, dropped=4)
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
    assert summarize(lines).totals == Totals(match=201, mismatch=11)


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


def test_logging_reconfiguration_does_not_silence_the_log(tmp_path: Path) -> None:
    """uvicorn calls logging.config.dictConfig at start, after the log is open; that resets
    every existing logger below the ones it names."""
    import logging.config

    parent = logging.getLogger("cutover")
    saved = (parent.level, parent.handlers[:], parent.propagate)
    log = ShadowLog(tmp_path / "s.jsonl")
    try:
        logging.config.dictConfig(
            {"version": 1, "disable_existing_loggers": False,
             "loggers": {"cutover": {"level": "ERROR"}}}
        )  # fmt: skip
        log.write({"kind": "probe"})
    finally:
        log.close()
        parent.setLevel(saved[0])
        parent.handlers = saved[1]
        parent.propagate = saved[2]
    assert json.loads((tmp_path / "s.jsonl").read_text()) == {"kind": "probe"}
