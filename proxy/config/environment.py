"""Which CUTOVER_* variables name a setting: a misspelt one is an error, as an unknown key
in the file is, with a guess at what was meant."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from cutover.config.settings import ENV_PREFIX, Settings

# CUTOVER_* variables that are not settings, read where they are named: the config file's
# path (cutover run/demo), the admin commands' address (CUTOVER_ADMIN_TOKEN is the
# admin_token setting, which the admin commands read too) and the admin port a
# `cutover run --workers N` parent hands its workers. Any other CUTOVER_* variable must name
# a setting: a misspelt one is an error, as an unknown key in the file is.
NOT_SETTINGS = frozenset({"CUTOVER_CONFIG", "CUTOVER_ADMIN_URL"})


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (``X | None`` included), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType):
        models = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(models) == 1:
            return _section(models[0])
    return None


def unknown_setting(name: str) -> str | None:
    """Why the variable ``name`` (CUTOVER_...) names no setting, or None if it names one.
    Matched without regard to case, as the settings source matches."""
    keys = name[len(ENV_PREFIX) :].lower().split("__")
    model: type[BaseModel] = Settings
    named: type[BaseModel] | None = None  # after a mapping by name (backends): key = a name
    for depth, key in enumerate(keys):
        if named is not None:
            if depth == len(keys) - 1:
                return None
            model, named = named, None
            continue
        fields = model.model_fields
        if key not in fields:
            where = ".".join(keys[:depth]) or "the config"
            guess = difflib.get_close_matches(key, list(fields), n=1)
            hint = ""
            if guess:
                suggestion = ENV_PREFIX + "__".join([*keys[:depth], guess[0]]).upper()
                hint = f"; did you mean {suggestion}?"
            return f"names no setting ({where} has no {key!r}){hint}"
        if depth == len(keys) - 1:
            return None
        annotation = fields[key].annotation
        if get_origin(annotation) is dict and _section(get_args(annotation)[1]) is not None:
            named = _section(get_args(annotation)[1])
            continue
        section = _section(annotation)
        if section is None:
            path = ".".join(keys[: depth + 1])
            if get_origin(annotation) is list:
                whole = ENV_PREFIX + "__".join(keys[: depth + 1]).upper()
                return f"names no setting ({path} is a list: set {whole} to all of it, as JSON)"
            return f"names no setting ({path} is a value, not a section)"
        model = section
    return None


def environment_problems(environ: Mapping[str, str]) -> list[str]:
    """``NAME: reason`` for each CUTOVER_* variable in ``environ`` that names no setting."""
    problems = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in NOT_SETTINGS:
            continue
        reason = unknown_setting(name)
        if reason is not None:
            problems.append(f"{name}: {reason}")
    return problems
