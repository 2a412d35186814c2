"""The durable rollout state: one JSON file, replaced atomically on every transition."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_VERSION = 1
PHASES = ("progressing", "paused", "promoted", "rolled_back", "manual")


class StateError(Exception):
    """The state file exists but cannot be used; the proxy must not start over it."""


@dataclass
class Transition:
    at: float  # Unix seconds
    from_phase: str | None
    to_phase: str
    from_weight: float | None
    to_weight: float
    reason: str
    actor: str  # "guard", "operator" or "startup"
    kind: str = "start"  # start, promote, rollback, pause, resume, restart, set_weight
    failure: dict[str, Any] | None = None


@dataclass
class RolloutState:
    phase: str
    weight: float
    baseline_memory_bytes: float | None = None
    last_legacy_p95: float | None = None
    reason: str | None = None
    failure: dict[str, Any] | None = None
    history: list[Transition] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any) -> RolloutState:
        if not isinstance(data, dict):
            raise StateError("the state is not a JSON object")
        if data.get("version") != STATE_VERSION:
            raise StateError(f"unsupported state version {data.get('version')!r}")
        try:
            history = [Transition(**item) for item in data.get("history", [])]
            state = cls(
                phase=data["phase"],
                weight=float(data["weight"]),
                baseline_memory_bytes=data.get("baseline_memory_bytes"),
                last_legacy_p95=data.get("last_legacy_p95"),
                reason=data.get("reason"),
                failure=data.get("failure"),
                history=history,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"the state is malformed: {exc}") from None
        if state.phase not in PHASES:
            raise StateError(f"unknown phase {state.phase!r}")
        if not 0 <= state.weight <= 100:
            raise StateError(f"weight {state.weight} is not between 0 and 100")
        return state


class StateStore:
    def __init__(self, path: Path, *, history_limit: int = 200) -> None:
        self.path = path
        self.history_limit = history_limit

    def stamp(self) -> tuple[int, int, int] | None:
        """(inode, size, mtime) of the file: changes whenever any process saves it."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def load(self) -> RolloutState | None:
        """The saved state, or None when there is none yet; StateError when unusable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError(f"{self.path} is not valid JSON: {exc}") from None
        try:
            return RolloutState.from_json(data)
        except StateError as exc:
            raise StateError(f"{self.path}: {exc}") from None

    def save(self, state: RolloutState) -> None:
        """Write to a temp file in the same directory, fsync, rename over, fsync the dir:
        a crash at any point leaves either the old or the new file, never a torn one."""
        del state.history[: -self.history_limit]
        directory = self.path.parent.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(state.to_json(), indent=2).encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
