"""Loading the configuration once: the YAML file read and parsed, the CUTOVER_* environment
over it, and every problem reported as ``path.to.field: reason`` in one ConfigError."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cutover.config.environment import environment_problems
from cutover.config.settings import Settings

_FRIENDLY = {
    "extra_forbidden": "unknown key",
    "missing": "required",
}


class ConfigError(Exception):
    """A configuration could not be loaded; ``problems`` lists ``path.to.field: reason``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def validation_problems(exc: ValidationError) -> list[str]:
    """Each of pydantic's errors as ``path.to.field: reason``."""
    problems = []
    for error in exc.errors():
        # A mapping's key is reported as the entry's name plus "[key]": the name says it all.
        loc = ".".join(str(part) for part in error["loc"] if part != "[key]") or "config"
        message = _FRIENDLY.get(error["type"], error["msg"])
        message = message.removeprefix("Value error, ")
        problems.append(f"{loc}: {message}")
    return problems


def key_problems(data: dict[Any, Any]) -> list[str]:
    """The top-level keys YAML did not read as strings (``yes:`` is a boolean)."""
    problems = []
    for key in data:
        if isinstance(key, str):
            continue
        if isinstance(key, bool):
            why = "YAML reads an unquoted yes/no/on/off/true/false as a boolean"
        else:
            why = f"YAML read this one as {type(key).__name__}"
        problems.append(f"{key}: keys must be strings; {why} (quote it)")
    return problems


def parse_settings(data: Any) -> Settings:
    """Validate an already-parsed mapping, with the CUTOVER_* environment over it; raise
    ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"config: must be a mapping of keys, got {type(data).__name__}"])
    if "admin_token" in data:
        raise ConfigError(["admin_token: keep it out of the file; set CUTOVER_ADMIN_TOKEN"])
    if "view_token" in data:
        raise ConfigError(["view_token: keep it out of the file; set CUTOVER_VIEW_TOKEN"])
    state = data.get("state")
    if isinstance(state, dict) and "password" in state:
        raise ConfigError(["state.password: keep it out of the file; set CUTOVER_STATE__PASSWORD"])
    clients = data.get("clients")
    if isinstance(clients, dict) and "hash_key" in clients:
        raise ConfigError(
            ["clients.hash_key: keep it out of the file; set CUTOVER_CLIENTS__HASH_KEY"]
        )
    problems = environment_problems(os.environ) + key_problems(data)
    if problems:
        # Validating would only repeat an unknown variable's problem in other words.
        raise ConfigError(problems)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc)) from None


def load_settings(path: str | Path) -> Settings:
    """Read and validate a YAML config file; raise ConfigError on any problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"config: cannot read {path}: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [f"config: {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})"]
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"config: {path} is not valid YAML{where}: {reason}"]) from None
    return parse_settings(data)
