"""Which migration a request belongs to: the longest path prefix, on segment boundaries,
whose methods include the request's.

A lookup costs one dict probe per segment of the path, whatever the number of prefixes, and
no more probes than the deepest prefix has segments (a path of a thousand segments costs
what one as deep as the rules does): ``/api/v1/backtests/7`` probes ``/api/v1/backtests``,
``/api/v1``, ``/api`` and ``/`` under rules three segments deep. A table of a few rules
is scanned instead, longest prefix first: cheaper than probing until about a dozen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

SCAN_BELOW = 8  # rules; up to this many, a scan beats the probes


class MatchConflict(Exception):
    """Two rules with the same prefix accept a method in common."""

    def __init__(self, first: str, second: str, prefix: str) -> None:
        super().__init__(f"{first} and {second} both match {prefix} with overlapping methods")
        self.first, self.second, self.prefix = first, second, prefix


@dataclass(frozen=True, slots=True)
class Rule(Generic[T]):
    name: str
    prefix: str
    methods: frozenset[str] | None  # None: every method
    value: T


def segment_key(prefix: str) -> tuple[str, bool]:
    """The table key of a prefix, and whether the path must go on below it
    (``/a/b/`` matches ``/a/b/c`` and ``/a/b/``, but not ``/a/b``)."""
    if prefix == "/":
        return "/", False
    key = prefix.rstrip("/") or "/"
    return key, prefix.endswith("/")


def overlap(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    return a is None or b is None or bool(a & b)


def matches(prefix: str, path: str) -> bool:
    """Whether ``path`` is at or below ``prefix`` on a segment boundary."""
    key, below_only = segment_key(prefix)
    if key == "/":
        return path.startswith("/")
    if path == key:
        return not below_only
    return path.startswith(key + "/")


def conflicts(rules: Iterable[Rule[T]]) -> list[MatchConflict]:
    """Every pair of rules with the same prefix and a method in common."""
    # ``/a`` and ``/a/`` count as one prefix: both match everything below ``/a``.
    seen: dict[str, list[Rule[T]]] = {}
    found = []
    for rule in rules:
        entries = seen.setdefault(segment_key(rule.prefix)[0], [])
        found += [MatchConflict(o.name, rule.name, rule.prefix) for o in entries
                  if overlap(o.methods, rule.methods)]  # fmt: skip
        entries.append(rule)
    return found


class PrefixTable(Generic[T]):
    def __init__(self, rules: Iterable[Rule[T]], *, scan: bool | None = None) -> None:
        """``scan``: scan the rules (True) or probe by segment (False); None: by their number."""
        rules = list(rules)
        problems = conflicts(rules)
        if problems:
            raise problems[0]
        # key -> [(below_only, rule)], in the order given
        self._table: dict[str, list[tuple[bool, Rule[T]]]] = {}
        for rule in rules:
            key, below_only = segment_key(rule.prefix)
            self._table.setdefault(key, []).append((below_only, rule))
        self._depth = max((key.count("/") for key in self._table if key != "/"), default=0)
        self._has_root = "/" in self._table
        # Longest key first: the first rule a scan finds is the most specific. Each entry:
        # what a path below the key starts with ("" for the root: every path), the key a
        # path equal to it matches (None: below only), the rule's methods and the rule.
        self._scan = (
            [(("" if key == "/" else key + "/"), None if below_only else key, r.methods, r)
             for (key, below_only), r in sorted(((segment_key(r.prefix), r) for r in rules),
                                                key=lambda e: -len(e[0][0]))]
            if (len(rules) <= SCAN_BELOW if scan is None else scan)
            else None
        )  # fmt: skip
        self.rules = rules

    def __len__(self) -> int:
        return len(self.rules)

    def lookup(self, path: str, method: str) -> Rule[T] | None:
        scan = self._scan
        if scan is not None:
            for below, key, methods, rule in scan:
                if (methods is None or method in methods) and (
                    path.startswith(below) or path == key
                ):
                    return rule
            return None
        return self._probe(path, method)

    def _probe(self, path: str, method: str) -> Rule[T] | None:
        table = self._table
        # Start no deeper than the deepest key: the part of the path past it cannot match.
        cut = -1
        for _ in range(self._depth + 1):
            cut = path.find("/", cut + 1)
            if cut < 0:
                break
        if cut < 0:
            key, below = path, False
        else:
            key, below = path[:cut], True
        while True:
            if key:
                entries = table.get(key)
                if entries is not None:
                    for below_only, rule in entries:
                        if (below or not below_only) and (
                            rule.methods is None or method in rule.methods
                        ):
                            return rule
            if key == "/" or not key:
                break
            cut = key.rfind("/")
            key, below = (key[:cut] if cut > 0 else "/"), True
        if self._has_root and key != "/":
            return self._probe_root(method)
        return None

    def _probe_root(self, method: str) -> Rule[T] | None:
        for _, rule in self._table["/"]:
            if rule.methods is None or method in rule.methods:
                return rule
        return None
