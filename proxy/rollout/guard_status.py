"""The guard's latest evaluation of each migration, shared through a file beside the state
file.

Only the guard's leader evaluates (``coordination.py``). After every evaluation it writes
here what it found: each check's verdict, how long they have all passed in a row, the run
of failures. The other workers show that in ``/status`` (so an operator sees the same
checks and ``healthy_for`` whichever worker answers), and a worker that becomes the leader,
or a restarted process, carries the stage's hold on instead of starting it again.

Times in the file are wall-clock (they must mean something to another process, or after a
restart); the reader converts them to its monotonic clock once, when it adopts them
(``Rollout.adopt``). The file is a cache rewritten every interval: replaced atomically but
not fsynced, and one that cannot be read or written is logged and otherwise ignored.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from cutover.rollout.checks import Verdict
from cutover.rollout.state import DEFAULT_MIGRATION, Stamp
from cutover.vocabulary import CheckResult


class EvaluationFileError(Exception):
    """The shared evaluation file exists but cannot be used."""


@dataclass(frozen=True)
class SharedEvaluation:
    at: float  # wall clock, when the leader evaluated
    judged: float | None  # the ``at`` of the state's last transition then (whose hold it is)
    healthy_for: float | None
    consecutive_failures: int
    checks: tuple[Verdict, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "at": self.at,
            "judged": self.judged,
            "healthy_for": self.healthy_for,
            "consecutive_failures": self.consecutive_failures,
            "checks": [verdict.as_dict() for verdict in self.checks],
        }

    def carried_over(
        self, judged: float | None, *, now: float, monotonic_now: float, fresh: float
    ) -> tuple[float | None, int]:
        """What a process whose state's last transition is at ``judged`` takes over: since
        when every check has passed, on its monotonic clock (None: not passing), and the run
        of failures. The hold counts only if it belongs to that stage (no transition since);
        the time since this was written counts too when no more than ``fresh`` seconds (the
        leader is evaluating) and not at all otherwise (nobody was watching)."""
        if self.judged != judged:
            return None, 0
        if self.healthy_for is None:
            return None, self.consecutive_failures
        gap = now - self.at
        credit = gap if 0 <= gap <= fresh else 0.0
        return monotonic_now - (self.healthy_for + credit), self.consecutive_failures


class _Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)

    check: str
    result: CheckResult
    value: float | None = None
    threshold: float | None = None
    detail: str = ""
    rolls_back: bool = True


class _Evaluation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: float
    judged: float | None
    healthy_for: float | None
    consecutive_failures: int
    checks: list[_Verdict]


class _Evaluations(BaseModel):
    model_config = ConfigDict(extra="forbid")

    migrations: dict[str, _Evaluation]


class EvaluationFile:
    """``.<state file name>.guard`` beside the state file. Blocking: call it in a thread."""

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.parent / f".{state_path.name}.guard"

    def write(self, evaluations: dict[str, SharedEvaluation]) -> None:
        payload = encode_evaluations(evaluations)
        fd, tmp = tempfile.mkstemp(prefix=f"{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def stamp(self) -> Stamp | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def read_if_changed(
        self, seen: Stamp | None
    ) -> tuple[Stamp | None, dict[str, SharedEvaluation] | None]:
        """(stamp, evaluations by migration): None when the file is missing or has the
        stamp ``seen``; EvaluationFileError (or OSError) when it cannot be used."""
        stamp = self.stamp()
        if stamp is None or stamp == seen:
            return stamp, None
        return stamp, parse_evaluations(self.path.read_bytes(), str(self.path))


def encode_evaluations(evaluations: dict[str, SharedEvaluation]) -> bytes:
    document = {"migrations": {name: e.to_json() for name, e in evaluations.items()}}
    return json.dumps(document).encode("utf-8")


def parse_evaluations(payload: bytes, where: str) -> dict[str, SharedEvaluation]:
    """The evaluations by migration; EvaluationFileError naming ``where`` and the field."""
    try:
        raw = json.loads(payload)
    except ValueError as exc:
        raise EvaluationFileError(f"{where}: not valid JSON: {exc}") from None
    if isinstance(raw, dict) and "migrations" not in raw:
        # Written before migrations had names: the one rollout's, the default's.
        raw = {"migrations": {DEFAULT_MIGRATION: raw}}
    try:
        model = _Evaluations.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "file"
        raise EvaluationFileError(f"{where}: {field}: {first['msg']}") from None
    return {name: _shared(e) for name, e in model.migrations.items()}


def _shared(model: _Evaluation) -> SharedEvaluation:
    checks = tuple(Verdict(**verdict.model_dump()) for verdict in model.checks)
    return SharedEvaluation(
        model.at, model.judged, model.healthy_for, model.consecutive_failures, checks
    )
