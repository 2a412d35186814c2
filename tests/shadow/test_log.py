import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.shadow.compare import Diff
from cutover.shadow.log import REDACTED, ShadowLog, redact_headers, redact_query, totals_record
from cutover.shadow.report import log_files, read_lines
from tests.shadow.records import EXECUTE, record


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
        "migration": "trade-engine",
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


def test_totals_record_counts_every_result() -> None:
    line = totals_record(totals={"mismatch": 3, "match": 9}, run_id="run-a", at=0)
    assert line == {
        "kind": "totals",
        "at": "1970-01-01T00:00:00.000Z",
        "run_id": "run-a",
        "totals": {"match": 9, "mismatch": 3, "error": 0, "dropped": 0},
    }
    assert json.dumps(line["totals"]) == '{"match": 9, "mismatch": 3, "error": 0, "dropped": 0}'


def test_query_values_redacted() -> None:
    assert redact_query("") == ""
    assert redact_query("token=abc&verbose=1&&flag") == (
        f"token={REDACTED}&verbose={REDACTED}&flag={REDACTED}"
    )


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
