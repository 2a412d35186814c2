"""The durable rollout state: one JSON file holding every migration's state by name,
validated as a whole on load and replaced atomically on every transition.

Version 2 is ``{"version": 2, "migrations": {name: state}}``. A version-1 file (one rollout,
written before migrations had names) is read as the state of the migration ``default``,
which is what a config without ``migrations`` has; the next save writes version 2."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Strict, ValidationError

from cutover.vocabulary import Actor, Phase, Role, TransitionKind

STATE_VERSION = 2
SINGLE_ROLLOUT_VERSION = 1  # one rollout's state, from before migrations
DEFAULT_MIGRATION = "default"  # whose state a version-1 file is

Stamp = tuple[int, int, int]
# Writes ``payload`` as the whole new content of ``path``, or raises OSError.
Writer = Callable[[Path, bytes], None]


def _dumps_state(document: dict[str, Any], indent: str) -> str:
    """One migration's state: indented, one transition per line (readable, and fast: the C
    encoder serialises each line, where ``indent`` alone falls back to pure Python)."""
    fields = [f"{indent}  {json.dumps(k)}: {json.dumps(v)}" for k, v in document.items()
              if k != "history"]  # fmt: skip
    history = document.get("history", [])
    lines = f",\n{indent}    ".join(json.dumps(item) for item in history)
    body = f"[\n{indent}    {lines}\n{indent}  ]" if history else "[]"
    fields.append(f'{indent}  "history": {body}')
    return "{\n" + ",\n".join(fields) + f"\n{indent}}}"


def dumps(states: Mapping[str, RolloutState]) -> str:
    """The file's text for every migration's state."""
    entries = [
        f"    {json.dumps(name)}: {_dumps_state(state.to_json(), '    ')}"
        for name, state in states.items()
    ]
    body = "{\n" + ",\n".join(entries) + "\n  }" if entries else "{}"
    return f'{{\n  "version": {STATE_VERSION},\n  "migrations": {body}\n}}\n'


class StateError(Exception):
    """The state file exists but cannot be used; the proxy must not start over it.
    ``problems`` lists ``field.path: reason`` (or what is wrong with the file)."""

    def __init__(self, problems: list[str], path: Path | None = None) -> None:
        where = "" if path is None else f"{path}: "
        super().__init__(where + "; ".join(problems))
        self.problems = problems
        self.path = path


class SaveError(Exception):
    """The state could not be written; nothing was changed (the old file is intact)."""


@dataclass
class Transition:
    at: float  # Unix seconds
    from_phase: Phase | None
    to_phase: Phase
    from_weight: float | None
    to_weight: float
    reason: str
    actor: Actor
    kind: TransitionKind = TransitionKind.START
    failure: dict[str, Any] | None = None
    host: str | None = None  # the host that made it (a fleet on Redis)
    role: Role | None = None  # the console's signed-in role, for an operator's action there

    def to_json(self) -> dict[str, Any]:
        document = dict(vars(self))
        if self.host is None:
            del document["host"]  # one host: as the file was before fleets
        if self.role is None:
            del document["role"]  # not from the console: as the file was before it
        return document


@dataclass
class RolloutState:
    phase: Phase
    weight: float
    baseline_memory_bytes: float | None = None
    last_legacy_p95: float | None = None
    reason: str | None = None
    failure: dict[str, Any] | None = None
    history: list[Transition] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every value, 2.5 ms for 200 transitions.
        return {
            **{name: getattr(self, name) for name in _STATE_FIELDS},
            "history": [transition.to_json() for transition in self.history],
        }

    @classmethod
    def from_model(cls, model: _MigrationState) -> RolloutState:
        return cls(
            phase=model.phase,
            weight=model.weight,
            baseline_memory_bytes=model.baseline_memory_bytes,
            last_legacy_p95=model.last_legacy_p95,
            reason=model.reason,
            failure=model.failure,
            history=[Transition(**item.model_dump()) for item in model.history],
        )


_STATE_FIELDS = tuple(name for name in RolloutState.__dataclass_fields__ if name != "history")


def _weight(value: float) -> float:
    if not 0 <= value <= 100:
        raise ValueError("must be between 0 and 100")
    return value


def _non_negative(value: float) -> float:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _strings_only(value: Any) -> Any:
    # From parsed JSON, strict mode would take only enum instances, lax mode bytes too: the
    # fields below take the file's strings, and anything else gets the enum's own error.
    return value if isinstance(value, str) else None


Weight = Annotated[float, AfterValidator(_weight)]
NonNegative = Annotated[float, AfterValidator(_non_negative)]
SavedPhase = Annotated[Phase, Strict(False), BeforeValidator(_strings_only)]
SavedActor = Annotated[Actor, Strict(False), BeforeValidator(_strings_only)]
SavedKind = Annotated[TransitionKind, Strict(False), BeforeValidator(_strings_only)]
SavedRole = Annotated[Role, Strict(False), BeforeValidator(_strings_only)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class _Transition(_Strict):
    at: NonNegative
    from_phase: SavedPhase | None
    to_phase: SavedPhase
    from_weight: Weight | None
    to_weight: Weight
    reason: str
    actor: SavedActor
    kind: SavedKind = TransitionKind.START
    failure: dict[str, Any] | None = None
    host: str | None = None
    role: SavedRole | None = None


class _MigrationState(_Strict):
    """One migration's state as this version writes it (``RolloutState.to_json``)."""

    phase: SavedPhase
    weight: Weight
    baseline_memory_bytes: NonNegative | None = None
    last_legacy_p95: NonNegative | None = None
    reason: str | None = None
    failure: dict[str, Any] | None = None
    history: list[_Transition] = []


class _SingleRolloutFile(_MigrationState):
    """A version-1 file: one rollout's state."""

    version: Literal[1]


class _StateFile(_Strict):
    version: Literal[2]
    migrations: dict[str, _MigrationState]


def parse_states(data: Any) -> dict[str, RolloutState]:
    """Validate the whole document (strict types: a number written as a string, or a
    timestamp written as an ISO date, is an error, not converted); StateError lists every
    problem as ``field.path: reason``."""
    if not isinstance(data, dict):
        raise StateError([f"must be a JSON object, got {type(data).__name__}"])
    version = data.get("version")
    if version not in (SINGLE_ROLLOUT_VERSION, STATE_VERSION):
        raise StateError(
            [f"version: unsupported state version {version!r} "
             f"(this Cutover reads versions {SINGLE_ROLLOUT_VERSION} and {STATE_VERSION})"]
        )  # fmt: skip
    try:
        if version == SINGLE_ROLLOUT_VERSION:
            single = _SingleRolloutFile.model_validate(data)
            return {DEFAULT_MIGRATION: RolloutState.from_model(single)}
        model = _StateFile.model_validate(data)
    except ValidationError as exc:
        raise StateError(_problems(exc)) from None
    return {name: RolloutState.from_model(state) for name, state in model.migrations.items()}


_FRIENDLY = {"extra_forbidden": "unknown key", "missing": "required"}


def _problems(exc: ValidationError) -> list[str]:
    """``history.3.at: Input should be a valid number``, as config problems are written."""
    problems = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"]) or "state"
        message = _FRIENDLY.get(error["type"], error["msg"]).removeprefix("Value error, ")
        problems.append(f"{loc}: {message}")
    return problems


def write_atomically(path: Path, payload: bytes) -> None:
    """Write to a temp file in the same directory, fsync, rename over, fsync the directory:
    a crash at any point leaves either the old or the new file, never a torn one."""
    directory = path.parent.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateStore:
    """Blocking file I/O: call it off the event loop (``asyncio.to_thread``) once serving."""

    def __init__(
        self, path: Path, *, history_limit: int = 200, writer: Writer = write_atomically
    ) -> None:
        self.path = path
        self.history_limit = history_limit
        self.writer = writer

    def stamp(self) -> Stamp | None:
        """(inode, size, mtime) of the file: changes whenever any process saves it."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = exc.strerror or exc
            raise StateError([f"cannot read {self.path}: {reason}"], self.path) from None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def load(self) -> dict[str, RolloutState] | None:
        """Every migration's saved state by name, or None when there is no file yet;
        StateError when it is unusable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise StateError([f"cannot read {self.path}: {reason}"], self.path) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError([f"{self.path} is not valid JSON: {exc}"], self.path) from None
        try:
            return parse_states(data)
        except StateError as exc:
            raise StateError(exc.problems, self.path) from None

    def save(self, states: Mapping[str, RolloutState]) -> Stamp | None:
        """Replace the file with ``states`` (each history trimmed to the limit) and return
        the new file's stamp; SaveError (the old file intact) when it cannot be written."""
        for state in states.values():
            del state.history[: -self.history_limit]
        payload = dumps(states).encode("utf-8")
        try:
            self.writer(self.path, payload)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise SaveError(f"could not save the rollout state to {self.path}: {reason}") from exc
        return self.stamp()
