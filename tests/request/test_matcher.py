"""Matching a request to a rule: path-segment prefixes, the longest wins, methods, conflicts."""

from __future__ import annotations

import pytest

from cutover.request.matcher import MatchConflict, PrefixTable, Rule

SCAN: list[bool | None] = [None]


@pytest.fixture(autouse=True, params=[True, False], ids=["scan", "probe"])
def both_ways(request: pytest.FixtureRequest) -> None:
    """Every test runs against both lookups: the scan of a small table and the probes."""
    SCAN[0] = request.param


def table(*specs: tuple[str, str, set[str] | None]) -> PrefixTable[str]:
    return PrefixTable(
        (
            Rule(name, prefix, None if methods is None else frozenset(methods), name)
            for name, prefix, methods in specs
        ),
        scan=SCAN[0],
    )


def name(found: Rule[str] | None) -> str | None:
    return None if found is None else found.name


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1", "v1"),
        ("/api/v1/", "v1"),
        ("/api/v1/backtests", "v1"),
        ("/api/v10", None),  # not a segment boundary
        ("/api/v1x/y", None),
        ("/api", None),
        ("/", None),
    ],
)
def test_a_prefix_matches_on_segment_boundaries(path: str, expected: str | None) -> None:
    assert name(table(("v1", "/api/v1", None)).lookup(path, "GET")) == expected


def test_a_prefix_with_a_trailing_slash_matches_below_it_only() -> None:
    rules = table(("below", "/api/v1/backtests/", None))
    assert name(rules.lookup("/api/v1/backtests/7", "GET")) == "below"
    assert name(rules.lookup("/api/v1/backtests/", "GET")) == "below"
    assert rules.lookup("/api/v1/backtests", "GET") is None


def test_the_longest_matching_prefix_wins_whatever_the_order() -> None:
    rules = table(
        ("api", "/api", None), ("deep", "/api/v1/backtests", None), ("v1", "/api/v1", None)
    )
    assert name(rules.lookup("/api/v1/backtests/7/execute", "POST")) == "deep"
    assert name(rules.lookup("/api/v1/strategies", "GET")) == "v1"
    assert name(rules.lookup("/api/v2", "GET")) == "api"
    assert rules.lookup("/other", "GET") is None


def test_methods_narrow_a_rule_and_a_shorter_prefix_takes_the_rest() -> None:
    rules = table(("posts", "/api/v1/backtests", {"POST"}), ("api", "/api", None))
    assert name(rules.lookup("/api/v1/backtests/7", "POST")) == "posts"
    assert name(rules.lookup("/api/v1/backtests/7", "GET")) == "api"


def test_the_same_prefix_with_other_methods_is_two_rules() -> None:
    rules = table(("writes", "/api", {"POST", "PUT"}), ("reads", "/api", {"GET", "HEAD"}))
    assert name(rules.lookup("/api/x", "PUT")) == "writes"
    assert name(rules.lookup("/api/x", "HEAD")) == "reads"
    assert rules.lookup("/api/x", "DELETE") is None


def test_a_root_prefix_matches_every_path() -> None:
    rules = table(("all", "/", None), ("api", "/api", None))
    assert name(rules.lookup("/", "GET")) == "all"
    assert name(rules.lookup("/health", "GET")) == "all"
    assert name(rules.lookup("/api/x", "GET")) == "api"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (None, None),
        ({"POST"}, None),
        ({"POST", "GET"}, {"GET"}),
    ],
)
def test_the_same_prefix_with_overlapping_methods_is_a_conflict_naming_both(
    first: set[str] | None, second: set[str] | None
) -> None:
    with pytest.raises(MatchConflict) as info:
        table(("one", "/api/v1", first), ("two", "/api/v1", second))
    assert (info.value.first, info.value.second) == ("one", "two")
    assert "one and two" in str(info.value)


def test_many_rules_are_found_by_segment_not_by_scan() -> None:
    rules = table(*[(f"m{i}", f"/api/v1/feature{i}", None) for i in range(200)])
    assert len(rules) == 200
    assert name(rules.lookup("/api/v1/feature137/run", "GET")) == "m137"
    assert rules.lookup("/api/v1/feature1370", "GET") is None


def test_a_path_deeper_than_every_rule_costs_no_more_probes_and_still_matches() -> None:
    rules = table(("v1", "/api/v1", None), ("root", "/", {"GET"}))
    deep = "/api/v1" + "/x" * 5000
    assert name(rules.lookup(deep, "POST")) == "v1"
    assert name(rules.lookup("/y" * 5000, "GET")) == "root"
    assert rules.lookup("/y" * 5000, "POST") is None


@pytest.mark.parametrize("path", ["//", "/api//v1", "/api/v1//x", "/api/v1/", "/api/v1?x"])
def test_odd_paths_match_only_on_their_segments(path: str) -> None:
    found = name(table(("v1", "/api/v1", None)).lookup(path, "GET"))
    assert found == ("v1" if path.startswith("/api/v1/") else None)
