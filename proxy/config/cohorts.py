"""A migration's ``cohorts``: groups of requests sent to a chosen backend before the weight
is consulted, picked by a query parameter, a header, a cookie, the client's network or a
file of sticky keys (``users_file``, read when the config is loaded, so a reload re-reads it).

A value is an exact string or ``{regex: ...}``; a regex is compiled here once (an invalid
one is a config error) and matched against the whole value (``fullmatch``)."""

from __future__ import annotations

import re
import re._constants as re_constants
import re._parser as re_parser
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
    IPvAnyNetwork,
    PlainSerializer,
    PlainValidator,
    model_validator,
)

from cutover.config.base import BackendName, SectionConfig
from cutover.vocabulary import CohortKind

MAX_PATTERN = 512  # characters of a regex in the config
MAX_SUBJECT = 4096  # characters of a value a regex is tried on; longer ones never match
KINDS = tuple(CohortKind)
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class RegexConfig(SectionConfig):
    regex: str


def regex_problem(pattern: object) -> str | None:
    if not isinstance(pattern, str):
        return "regex: must be a string"
    if len(pattern) > MAX_PATTERN:
        return f"regex: is {len(pattern)} characters long; at most {MAX_PATTERN}"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"regex: is not a valid regular expression: {exc}"
    if nested_repeat(re_parser.parse(pattern)):
        return (
            "regex: repeats a group that is itself only a repetition, like (a+)+ or (x*)*: "
            "backtracking on such a pattern can take exponential time on a client's value; "
            "repeat once (a+), or use a possessive quantifier (a++) or an atomic group (?>...)"
        )
    return None


_REPEATS = (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT)


def _repeat(item: object) -> tuple[int, int, object] | None:
    """A variable repetition's (low, high, body), None for anything else (a{2} is fixed)."""
    if isinstance(item, tuple) and len(item) == 2 and item[0] in _REPEATS:
        low, high, body = item[1]
        return (low, high, body) if low != high else None
    return None


def _only_repeat(body: object) -> bool:
    """Whether ``body`` is one variable repetition, through any groups around it."""
    while isinstance(body, re_parser.SubPattern | list) and len(body) == 1:
        item = body[0]
        if isinstance(item, tuple) and item[0] == re_constants.SUBPATTERN:
            body = item[1][-1]
            continue
        return _repeat(item) is not None
    return False


def nested_repeat(parsed: object) -> bool:
    """Whether the parsed pattern (``re._parser``) repeats a group that is only a repetition:
    the classic exponential form. Possessive repeats and atomic groups never backtrack, and
    a separator in the group (``(\\.[0-9]+)*``) keeps the iterations apart, so neither is
    refused; the 4096-byte cap on values bounds the rest."""
    if isinstance(parsed, re_parser.SubPattern | list):
        return any(nested_repeat(item) for item in parsed)
    if not isinstance(parsed, tuple):
        return False
    repeat = _repeat(parsed)
    if repeat is not None and _only_repeat(repeat[2]):
        return True
    return any(nested_repeat(item) for item in parsed)


def match_value(value: object) -> str | RegexConfig:
    """An exact string, or ``{regex: ...}`` that compiles (one message, not one per type a
    union would try)."""
    if isinstance(value, str | RegexConfig):
        return value
    if isinstance(value, dict) and set(value) == {"regex"}:
        problem = regex_problem(value["regex"])
        if problem is not None:
            raise ValueError(problem)
        return RegexConfig(regex=value["regex"])
    raise ValueError("must be a string, or {regex: PATTERN}")


def _names(kind: str) -> AfterValidator:
    def check(value: dict[str, MatchValue]) -> dict[str, MatchValue]:
        if not value:
            raise ValueError(f"must name at least one {kind}")
        for name in value:
            if kind != "query parameter" and not _TOKEN_RE.match(name):
                raise ValueError(f"{name!r} is not a valid {kind} name")
            if not name:
                raise ValueError(f"a {kind} needs a name")
        return value

    return AfterValidator(check)


def _dump_value(value: str | RegexConfig) -> str | dict[str, str]:
    return value if isinstance(value, str) else {"regex": value.regex}


MatchValue = Annotated[str | RegexConfig, PlainValidator(match_value), PlainSerializer(_dump_value)]
QueryMatch = Annotated[dict[str, MatchValue], _names("query parameter")]
HeaderMatch = Annotated[dict[str, MatchValue], _names("header")]
CookieMatch = Annotated[dict[str, MatchValue], _names("cookie")]


@dataclass(frozen=True, slots=True)
class UsersFile:
    """A users file and the sticky keys it held when the config was loaded."""

    path: Path
    keys: frozenset[str]


def read_users(value: object) -> UsersFile:
    """The sticky keys in a file: one a line, stripped; blank lines and ``#`` lines skipped."""
    if isinstance(value, UsersFile):
        return value
    if not isinstance(value, str | Path) or not str(value):
        raise ValueError("must be the path of a file")
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    lines = (line.strip() for line in text.splitlines())
    return UsersFile(path, frozenset(line for line in lines if line and not line.startswith("#")))


class CohortConfig(SectionConfig):
    """Exactly one of ``query``, ``header``, ``cookie``, ``network``, ``users_file``; every
    name of a query, header or cookie mapping must match."""

    query: QueryMatch | None = None
    header: HeaderMatch | None = None
    cookie: CookieMatch | None = None
    network: list[IPvAnyNetwork] | None = Field(None, min_length=1)
    users_file: Annotated[UsersFile, PlainValidator(read_users)] | None = None
    backend: BackendName
    name: str | None = Field(None, min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.-]+$")
    survive_rollback: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> CohortConfig:
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"set exactly one of {', '.join(KINDS)} (found: {found})")
        if self.name == "weight":
            raise ValueError("name: 'weight' is the label of requests no cohort decided")
        return self

    @property
    def kind(self) -> CohortKind:
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    def label(self, index: int) -> str:
        """Its ``cohort`` label in the metrics: its name, else its index."""
        return self.name if self.name is not None else str(index)


def cohort_problems(
    cohorts: list[CohortConfig], source: str, target: str, sticky: str
) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with a migration's cohorts given its backends and resolved sticky key,
    each at its field (below the migration's): ``(("cohorts", 2, "backend"), reason)``."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: dict[str, int] = {}
    for index, cohort in enumerate(cohorts):
        if cohort.backend not in (source, target):
            reason = (
                f"{cohort.backend!r} is neither this migration's from ({source}) "
                f"nor its to ({target})"
            )
            problems.append((("cohorts", index, "backend"), reason))
        if cohort.users_file is not None and sticky == "none":
            reason = (
                "a users file lists sticky keys, and this migration has none: set its sticky "
                "(header:NAME, cookie:NAME or client_ip) or split.sticky"
            )
            problems.append((("cohorts", index, "users_file"), reason))
        label = cohort.label(index)
        if label in seen:
            reason = f"{label!r} is also the label of cohorts.{seen[label]}"
            problems.append((("cohorts", index, "name"), reason))
        seen.setdefault(label, index)
    return problems
