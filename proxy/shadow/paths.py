"""The JSON path language of the dual run: where a difference is (``format_path``) and which
nodes a route's ``shadow.ignore`` leaves out (``compile_ignore``, ``ignored``).

A path is JSONPath-like: ``$``, ``$.a.b``, ``$.items[3].price``, ``$["odd key"]``. An ignore
path may also use ``.*`` (any key) and ``[*]`` (any index).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from enum import Enum
from functools import lru_cache

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"\[(\d+)\]")
_DECODER = json.JSONDecoder()


class IgnorePathError(ValueError):
    """An ignore path that cannot be parsed."""


class _Wildcard(Enum):
    KEY = ".*"
    INDEX = "[*]"


Step = str | int  # an object key or an array index
_PatternStep = str | int | _Wildcard
Pattern = tuple[_PatternStep, ...]


def format_path(steps: Sequence[Step]) -> str:
    parts = ["$"]
    for step in steps:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _IDENTIFIER.fullmatch(step):
            parts.append(f".{step}")
        else:
            parts.append(f"[{json.dumps(step, ensure_ascii=False)}]")
    return "".join(parts)


def compile_ignore(ignore: Sequence[str]) -> tuple[Pattern, ...]:
    """The parsed ignore paths; IgnorePathError for the first one that cannot be parsed."""
    if isinstance(ignore, str):
        raise TypeError("ignore is a sequence of paths, not a single path")
    return tuple(parse_pattern(path) for path in ignore)


def check_ignore_paths(paths: Sequence[str]) -> None:
    """Raise IgnorePathError for the first path that cannot be parsed (for config validation)."""
    compile_ignore(paths)


@lru_cache(maxsize=256)
def parse_pattern(path: str) -> Pattern:
    if not path.startswith("$"):
        raise IgnorePathError(f"{path!r}: a path starts with $")
    steps: list[_PatternStep] = []
    i = 1
    while i < len(path):
        if path[i] == ".":
            end = i + 1
            while end < len(path) and path[end] not in ".[":
                end += 1
            name = path[i + 1 : end]
            if not name:
                raise IgnorePathError(f"{path!r}: empty key at offset {i}")
            steps.append(_Wildcard.KEY if name == "*" else name)
            i = end
        elif path.startswith("[*]", i):
            steps.append(_Wildcard.INDEX)
            i += 3
        elif path.startswith('["', i):
            try:
                name, end = _DECODER.raw_decode(path, i + 1)
            except json.JSONDecodeError:
                raise IgnorePathError(f"{path!r}: bad quoted key at offset {i}") from None
            if not path.startswith("]", end):
                raise IgnorePathError(f"{path!r}: expected ] at offset {end}")
            steps.append(name)
            i = end + 1
        elif match := _INDEX.match(path, i):
            steps.append(int(match.group(1)))
            i = match.end()
        else:
            raise IgnorePathError(f"{path!r}: unexpected {path[i]!r} at offset {i}")
    return tuple(steps)


def _step_matches(pattern: _PatternStep, step: Step) -> bool:
    if pattern is _Wildcard.KEY:
        return isinstance(step, str)
    if pattern is _Wildcard.INDEX:
        return isinstance(step, int)
    return type(pattern) is type(step) and pattern == step


def ignored(path: tuple[Step, ...], patterns: tuple[Pattern, ...]) -> bool:
    """Exact match only: the walk stops at an ignored node, so its subtree is never reached."""
    return any(
        len(pattern) == len(path) and all(map(_step_matches, pattern, path)) for pattern in patterns
    )
