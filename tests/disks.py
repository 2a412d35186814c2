"""A state file's disk that a test can fill up (CI runs as root: chmod stops nothing)."""

from __future__ import annotations

from pathlib import Path

from cutover.rollout.state import write_atomically


class Disk:
    """A ``StateStore`` writer: writes atomically until ``full`` is set, then fails as a full
    disk does; ``writes`` counts the writes that succeeded."""

    def __init__(self) -> None:
        self.full = False
        self.writes = 0

    def __call__(self, path: Path, payload: bytes) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        self.writes += 1
        write_atomically(path, payload)
