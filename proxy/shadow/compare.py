"""Dual run: compare the primary backend's response with the shadow backend's.

The status code is compared first; then JSON bodies structurally (numbers within a tolerance)
or, when either side is not JSON, the raw bytes. Differences are named by the paths of
``cutover.shadow.paths``, which also says which nodes are ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

from cutover.shadow.paths import Pattern, Step, compile_ignore, format_path, ignored

MISSING = "<missing>"
PREVIEW_BYTES = 64
MAX_STRING = 120
MAX_INLINE_JSON = 120

_UNPARSEABLE = object()


class DiffReason(StrEnum):
    """What differs at a path."""

    STATUS = "status"
    TYPE = "type"
    VALUE = "value"
    MISSING_KEY = "missing key"
    EXTRA_KEY = "extra key"
    LENGTH = "length"
    BYTES = "bytes"


@dataclass(frozen=True, slots=True)
class Tolerance:
    relative: float = 0.01
    absolute: float = 1e-9

    def __post_init__(self) -> None:
        if not (self.relative >= 0 and self.absolute >= 0):
            raise ValueError(f"tolerances must be non-negative numbers, got {self}")


@dataclass(frozen=True, slots=True)
class Diff:
    path: str
    primary: Any
    shadow: Any
    reason: DiffReason


def is_json_content_type(content_type: str | None) -> bool:
    """``application/json`` or any ``+json`` type; parameters such as charset are ignored."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or ("/" in media and media.endswith("+json"))


def numbers_match(a: float, b: float, tolerance: Tolerance) -> bool:
    """|a − b| ≤ absolute + relative·max(|a|, |b|); NaN matches NaN, an infinity only itself."""
    a_nan, b_nan = a != a, b != b  # also safe for ints too big for a float
    if a_nan or b_nan:
        return a_nan and b_nan
    if _is_infinite(a) or _is_infinite(b):
        return a == b
    try:
        return abs(a - b) <= tolerance.absolute + tolerance.relative * max(abs(a), abs(b))
    except OverflowError:  # an int too large for a float
        x, y = Fraction(a), Fraction(b)
        bound = Fraction(tolerance.absolute) + Fraction(tolerance.relative) * max(abs(x), abs(y))
        return abs(x - y) <= bound


def compare_json(
    a: Any,
    b: Any,
    *,
    tolerance: Tolerance,
    ignore: Sequence[str] = (),
    max_diffs: int = 50,
) -> list[Diff]:
    """Differences between two parsed JSON documents, at most max_diffs, depth first; an
    object's missing and extra keys come before the differences inside its values."""
    return _compare(a, b, tolerance, compile_ignore(ignore), _check_limit(max_diffs))


def compare_responses(
    primary_status: int,
    primary_body: bytes,
    primary_type: str | None,
    shadow_status: int,
    shadow_body: bytes,
    shadow_type: str | None,
    *,
    tolerance: Tolerance,
    ignore: Sequence[str] = (),
    max_diffs: int = 50,
) -> list[Diff]:
    """A status difference alone, else JSON differences when both sides are parseable JSON,
    else one ``bytes`` difference when the bodies differ. Ignoring ``$`` skips the body."""
    patterns = compile_ignore(ignore)
    limit = _check_limit(max_diffs)
    if primary_status != shadow_status:
        return [Diff("$", primary_status, shadow_status, DiffReason.STATUS)]
    if is_json_content_type(primary_type) and is_json_content_type(shadow_type):
        primary, shadow = _parse_json(primary_body), _parse_json(shadow_body)
        if primary is not _UNPARSEABLE and shadow is not _UNPARSEABLE:
            return _compare(primary, shadow, tolerance, patterns, limit)
    if primary_body == shadow_body or ignored((), patterns):
        return []
    return [Diff("$", _bytes_summary(primary_body), _bytes_summary(shadow_body), DiffReason.BYTES)]


def _check_limit(max_diffs: int) -> int:
    if max_diffs < 1:
        raise ValueError(f"max_diffs must be at least 1, got {max_diffs}")
    return max_diffs


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


class _Collector:
    __slots__ = ("diffs", "limit")

    def __init__(self, limit: int) -> None:
        self.diffs: list[Diff] = []
        self.limit = limit

    @property
    def full(self) -> bool:
        return len(self.diffs) >= self.limit

    def add(self, path: tuple[Step, ...], primary: Any, shadow: Any, reason: DiffReason) -> None:
        if not self.full:
            self.diffs.append(Diff(format_path(path), primary, shadow, reason))


def _compare(
    a: Any, b: Any, tolerance: Tolerance, patterns: tuple[Pattern, ...], limit: int
) -> list[Diff]:
    """Depth first with an explicit stack, so deep documents cannot exhaust the recursion limit."""
    found = _Collector(limit)
    stack: list[tuple[tuple[Step, ...], Any, Any]] = [((), a, b)]
    while stack and not found.full:
        path, left, right = stack.pop()
        if ignored(path, patterns):
            continue
        kind = _kind(left)
        if kind != _kind(right):
            found.add(path, _describe(left), _describe(right), DiffReason.TYPE)
        elif kind == "object":
            stack.extend(reversed(_object_children(path, left, right, patterns, found)))
        elif kind == "array":
            if len(left) != len(right):
                found.add(path, _describe_array(left), _describe_array(right), DiffReason.LENGTH)
            pairs = zip(left, right, strict=False)
            stack.extend(reversed([((*path, i), x, y) for i, (x, y) in enumerate(pairs)]))
        elif kind == "number":
            if not numbers_match(left, right, tolerance):
                found.add(path, _describe(left), _describe(right), DiffReason.VALUE)
        elif left != right:
            found.add(path, _describe(left), _describe(right), DiffReason.VALUE)
    return found.diffs


def _object_children(
    path: tuple[Step, ...],
    left: Mapping[str, Any],
    right: Mapping[str, Any],
    patterns: tuple[Pattern, ...],
    found: _Collector,
) -> list[tuple[tuple[Step, ...], Any, Any]]:
    """Reports missing and extra keys, returns the pairs under keys present on both sides."""
    children = []
    for key, value in left.items():
        child = (*path, key)
        if key in right:
            children.append((child, value, right[key]))
        elif not ignored(child, patterns):
            found.add(child, _describe(value), MISSING, DiffReason.MISSING_KEY)
    for key, value in right.items():
        child = (*path, key)
        if key not in left and not ignored(child, patterns):
            found.add(child, MISSING, _describe(value), DiffReason.EXTRA_KEY)
    return children


def _is_infinite(value: float) -> bool:
    return isinstance(value, float) and math.isinf(value)


def _describe_array(value: Sequence[Any]) -> str:
    return f"<array of {len(value)}>"


def _describe(value: Any) -> Any:
    """A small JSON-serialisable stand-in for value."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "<NaN>"
        if math.isinf(value):
            return "<Infinity>" if value > 0 else "<-Infinity>"
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return _shorten(value)
    if isinstance(value, Mapping | list | tuple):
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            text = None
        if text is not None and len(text) <= MAX_INLINE_JSON:
            return json.loads(text)
        if isinstance(value, Mapping):
            count = len(value)
            return f"<object with {count} key{'' if count == 1 else 's'}>"
        return _describe_array(value)
    return _shorten(f"<{type(value).__name__}: {value!r}>")


def _shorten(text: str) -> str:
    if len(text) <= MAX_STRING:
        return text
    return f"{text[:MAX_STRING]}... <{len(text)} chars>"


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _UNPARSEABLE


def _bytes_summary(body: bytes) -> dict[str, Any]:
    return {"length": len(body), "preview": repr(body[:PREVIEW_BYTES])}
