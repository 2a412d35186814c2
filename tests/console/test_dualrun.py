"""A migration's page shows the dual run's most frequent differing paths: its own lines of
the shadow log only, from the log's newest part."""

from __future__ import annotations

import json
from pathlib import Path

from cutover.console.dualrun import top_paths


def line(migration: str, *paths: str, path: str = "/api/v1/x") -> str:
    diffs = [{"path": p, "reason": "value", "primary": 1, "shadow": 2} for p in paths]
    record = {"migration": migration, "method": "GET", "path": path, "diffs": diffs}
    return json.dumps(record)


def test_the_top_paths_are_the_migrations_own(tmp_path: Path) -> None:
    log = tmp_path / "shadow.jsonl"
    lines = [line("m", "$.price", "$.id"), line("m", "$.price"), line("other", "$.zzz"),
             "not json", line("m", "$.price", path="/api/v1/y")]  # fmt: skip
    log.write_text("\n".join(lines) + "\n")
    top = top_paths(log, "m")
    assert [(p.path, p.count) for p in top] == [("$.price", 3), ("$.id", 1)]
    example = top[0].example
    assert (example.method, example.path, example.primary, example.shadow) == (
        "GET", "/api/v1/x", 1, 2,
    )  # fmt: skip
    assert top_paths(tmp_path / "missing.jsonl", "m") == []


def test_only_the_tail_is_read_and_its_cut_line_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "shadow.jsonl"
    old = [line("m", "$.old") for _ in range(200)]
    log.write_text("\n".join([*old, line("m", "$.new")]) + "\n")
    tail = len(line("m", "$.new")) + 40  # the last line whole, and part of the one before
    assert [p.path for p in top_paths(log, "m", tail=tail)] == ["$.new"]
