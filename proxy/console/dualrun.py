"""The dual run's top differing JSON paths of one migration, for its page: the newest
part of the shadow log (its last ``TAIL`` bytes, where the recent mismatches are),
summarised by ``shadow/report.py``. Blocking file reads: call it in a thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from cutover.shadow.report import PathCount, summarize

TAIL = 1 << 20
TOP = 5


def _lines(path: Path, migration: str, tail: int) -> Iterator[str]:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - tail))
            data = handle.read()
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    if len(data) >= tail:
        lines = lines[1:]  # the first one is cut
    needle = json.dumps(migration).encode("utf-8")
    for raw in lines:
        if needle not in raw:  # a cheap test before parsing
            continue
        line = raw.decode("utf-8", errors="replace")
        try:
            if json.loads(line).get("migration") == migration:
                yield line
        except (ValueError, AttributeError):
            continue


def top_paths(path: Path, migration: str, *, top: int = TOP, tail: int = TAIL) -> list[PathCount]:
    """The most frequent differing paths (each with an example); [] without a log."""
    return list(summarize(_lines(path, migration, tail)).paths[:top])
