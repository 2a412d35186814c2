import json
import math
from dataclasses import asdict
from datetime import date
from typing import Any

import pytest

from cutover.shadow.compare import (
    MISSING,
    Diff,
    Tolerance,
    compare_json,
    compare_responses,
    is_json_content_type,
    numbers_match,
)
from cutover.shadow.paths import IgnorePathError
from cutover_demo.legacy_backend import engine as legacy_engine
from cutover_demo.new_backend import engine as new_engine

DEFAULT = Tolerance()
EXACT = Tolerance(relative=0.0, absolute=0.0)
JSON = "application/json"


def diffs(a: Any, b: Any, **kwargs: Any) -> list[Diff]:
    kwargs.setdefault("tolerance", DEFAULT)
    return compare_json(a, b, **kwargs)


def paths(found: list[Diff]) -> list[str]:
    return [diff.path for diff in found]


def respond(
    a: bytes, b: bytes, a_type: str | None = JSON, b_type: str | None = JSON, **kwargs: Any
) -> list[Diff]:
    kwargs.setdefault("tolerance", DEFAULT)
    return compare_responses(200, a, a_type, 200, b, b_type, **kwargs)


# Tolerance: |a - b| <= absolute + relative * max(|a|, |b|)


def test_exactly_at_the_bound_passes_and_just_over_fails() -> None:
    tolerance = Tolerance(relative=0.25, absolute=0.5)  # exact binary fractions
    assert numbers_match(4.0, 6.0, tolerance)  # |2| <= 0.5 + 0.25 * 6
    assert numbers_match(6, 4, tolerance)
    assert not numbers_match(4.0, 6.25, tolerance)  # 2.25 > 0.5 + 0.25 * 6.25
    assert not numbers_match(4.0, math.nextafter(6.0, 7.0), Tolerance(relative=0.25, absolute=0))
    assert numbers_match(1.0, 2.0, Tolerance(relative=0.5, absolute=0.0))
    assert not numbers_match(1.0, 2.0000001, Tolerance(relative=0.5, absolute=0.0))


def test_default_tolerance_is_one_percent() -> None:
    assert numbers_match(100.0, 101.0, DEFAULT)
    assert numbers_match(-100.0, -101.0, DEFAULT)
    assert not numbers_match(100.0, 102.1, DEFAULT)
    assert not numbers_match(1.0, -1.0, DEFAULT)


def test_absolute_term_decides_near_zero() -> None:
    assert numbers_match(0.0, 1e-9, DEFAULT)
    assert numbers_match(0.0, -5e-10, DEFAULT)
    assert not numbers_match(0.0, 1e-8, DEFAULT)
    assert not numbers_match(0.0, 1e-300, EXACT)
    assert numbers_match(0.0, 0.05, Tolerance(relative=0.0, absolute=0.05))


def test_ints_and_floats_compare_numerically() -> None:
    assert numbers_match(1, 1.0, EXACT)
    assert diffs({"n": 1}, {"n": 1.0}, tolerance=EXACT) == []
    assert diffs([3], [3.1]) == [Diff("$[0]", 3, 3.1, "value")]
    big = 10**400  # too large for a float
    assert numbers_match(big, big + 1, DEFAULT)
    assert not numbers_match(big, 2 * big, DEFAULT)
    assert not numbers_match(big, 1.0, DEFAULT)


def test_nan_and_infinities() -> None:
    nan, inf = math.nan, math.inf
    assert numbers_match(nan, nan, DEFAULT)
    assert not numbers_match(nan, 1.0, DEFAULT)
    assert not numbers_match(0.0, nan, Tolerance(relative=1e9, absolute=1e9))
    assert numbers_match(inf, inf, DEFAULT)
    assert numbers_match(-inf, -inf, DEFAULT)
    assert not numbers_match(inf, -inf, DEFAULT)
    assert not numbers_match(inf, 1e308, Tolerance(relative=1.0, absolute=inf))
    body = b'{"a": NaN, "b": Infinity, "c": -Infinity}'
    assert respond(body, body) == []
    found = respond(body, b'{"a": 1, "b": -Infinity, "c": -Infinity}')
    assert found == [
        Diff("$.a", "<NaN>", 1, "value"),
        Diff("$.b", "<Infinity>", "<-Infinity>", "value"),
    ]
    json.dumps([asdict(diff) for diff in found], allow_nan=False)


def test_booleans_and_null_are_not_numbers() -> None:
    assert diffs({"x": True}, {"x": 1}) == [Diff("$.x", True, 1, "type")]
    assert diffs([False], [0]) == [Diff("$[0]", False, 0, "type")]
    assert diffs([None], [0]) == [Diff("$[0]", None, 0, "type")]
    assert diffs([True, None], [False, None]) == [Diff("$[0]", True, False, "value")]
    assert diffs([True, False, None], [True, False, None], tolerance=EXACT) == []


def test_invalid_tolerance() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Tolerance(relative=-0.1)
    with pytest.raises(ValueError, match="non-negative"):
        Tolerance(absolute=math.nan)


# Structure


def test_equal_documents_have_no_diffs() -> None:
    doc = {"a": [1, {"b": "x", "c": [None, True, 2.5]}], "d": {}, "e": []}
    assert diffs(doc, json.loads(json.dumps(doc)), tolerance=EXACT) == []


def test_nested_objects_and_arrays() -> None:
    a = {"items": [{"price": 10.0, "tags": ["a", "b"]}, {"price": 20.0}], "meta": {"n": 2}}
    b = {"items": [{"price": 10.0, "tags": ["a", "c"]}, {"price": 25.0}], "meta": {"n": 3}}
    assert diffs(a, b) == [
        Diff("$.items[0].tags[1]", "b", "c", "value"),
        Diff("$.items[1].price", 20.0, 25.0, "value"),
        Diff("$.meta.n", 2, 3, "value"),
    ]


def test_missing_and_extra_keys_reported_per_key() -> None:
    a = {"a": 1, "b": {"x": 1, "y": 2}, "c": 3}
    b = {"a": 1, "b": {"x": 1, "z": [1, 2]}, "d": 4, "e": None}
    assert diffs(a, b) == [
        Diff("$.c", 3, MISSING, "missing key"),
        Diff("$.d", MISSING, 4, "extra key"),
        Diff("$.e", MISSING, None, "extra key"),
        Diff("$.b.y", 2, MISSING, "missing key"),
        Diff("$.b.z", MISSING, [1, 2], "extra key"),
    ]


def test_array_length_then_common_prefix() -> None:
    found = diffs({"xs": [1, 2, 3, 4, 5]}, {"xs": [1, 9, 3]})
    assert found == [
        Diff("$.xs", "<array of 5>", "<array of 3>", "length"),
        Diff("$.xs[1]", 2, 9, "value"),
    ]
    assert diffs([], [1]) == [Diff("$", "<array of 0>", "<array of 1>", "length")]


def test_strings_compare_exactly() -> None:
    assert diffs(["abc"], ["abc"]) == []
    assert diffs(["abc"], ["abd"]) == [Diff("$[0]", "abc", "abd", "value")]
    assert diffs(["a"], ["a "]) == [Diff("$[0]", "a", "a ", "value")]
    assert diffs(["1.0"], ["1"]) == [Diff("$[0]", "1.0", "1", "value")]


def test_type_changes() -> None:
    assert diffs({"n": 1.5}, {"n": "1.5"}) == [Diff("$.n", 1.5, "1.5", "type")]
    assert diffs({"o": {"a": 1}}, {"o": [1]}) == [Diff("$.o", {"a": 1}, [1], "type")]
    assert diffs({"o": None}, {"o": {}}) == [Diff("$.o", None, {}, "type")]
    assert diffs([1], {"0": 1}) == [Diff("$", [1], {"0": 1}, "type")]


def test_paths_quote_odd_keys() -> None:
    a = {"odd key": {"ok_1": [{"a-b": 1, "é": 1, "*": 1, "": 1}]}}
    b = {"odd key": {"ok_1": [{"a-b": 2, "é": 2, "*": 2, "": 2}]}}
    assert paths(diffs(a, b)) == [
        '$["odd key"].ok_1[0]["a-b"]',
        '$["odd key"].ok_1[0]["é"]',
        '$["odd key"].ok_1[0]["*"]',
        '$["odd key"].ok_1[0][""]',
    ]


# Ignored paths


def test_ignore_exact_paths_and_their_subtrees() -> None:
    a = {"engine": "legacy", "meta": {"executed_at": 1, "host": "a", "deep": {"x": 1}}, "v": 1}
    b = {"engine": "new", "meta": {"executed_at": 2, "host": "b", "deep": {"x": [2]}}, "v": 1}
    assert paths(diffs(a, b)) == ["$.engine", "$.meta.executed_at", "$.meta.host", "$.meta.deep.x"]
    ignore = ["$.engine", "$.meta.executed_at", "$.meta.deep"]
    assert paths(diffs(a, b, ignore=ignore)) == ["$.meta.host"]
    assert diffs(a, b, ignore=["$.engine", "$.meta"]) == []
    assert diffs(a, {"x": 1}, ignore=["$"]) == []


def test_ignore_applies_to_missing_and_extra_keys() -> None:
    a = {"keep": 1, "gone": 1, "meta": {"trace": "t"}}
    b = {"keep": 1, "added": 2, "meta": {}}
    assert diffs(a, b, ignore=["$.gone", "$.added", "$.meta.trace"]) == []
    assert paths(diffs(a, b, ignore=["$.gone"])) == ["$.added", "$.meta.trace"]


def test_ignore_wildcards() -> None:
    a = {"trades": [{"id": "a1", "qty": 1}, {"id": "a2", "qty": 2}], "x": {"id": 1}}
    b = {"trades": [{"id": "b1", "qty": 1}, {"id": "b2", "qty": 3}], "x": {"id": 2}}
    assert paths(diffs(a, b, ignore=["$.trades[*].id"])) == ["$.trades[1].qty", "$.x.id"]
    assert paths(diffs(a, b, ignore=["$.trades[*]"])) == ["$.x.id"]
    assert paths(diffs(a, b, ignore=["$.trades[1]"])) == ["$.trades[0].id", "$.x.id"]
    a2 = {"s1": {"timestamp": 1, "v": 1}, "s2": {"timestamp": 2, "v": 1}, "timestamp": 5}
    b2 = {"s1": {"timestamp": 9, "v": 1}, "s2": {"timestamp": 8, "v": 2}, "timestamp": 6}
    assert paths(diffs(a2, b2, ignore=["$.*.timestamp"])) == ["$.s2.v", "$.timestamp"]
    assert paths(diffs(a2, b2, ignore=["$.*"])) == []
    # [*] is any index, .* any key: neither stands in for the other
    assert paths(diffs([{"t": 1}], [{"t": 2}], ignore=["$.*.t"])) == ["$[0].t"]
    assert paths(diffs({"k": {"t": 1}}, {"k": {"t": 2}}, ignore=["$[*].t"])) == ["$.k.t"]


def test_ignore_quoted_keys_and_literal_star() -> None:
    a = {"odd key": 1, "*": 1, "other": 1}
    b = {"odd key": 2, "*": 2, "other": 2}
    assert paths(diffs(a, b, ignore=['$["odd key"]', '$["*"]'])) == ["$.other"]
    assert paths(diffs({"a b": [1, 2]}, {"a b": [1, 3]}, ignore=['$["a b"][1]'])) == []


def test_bad_ignore_paths_are_refused_before_comparing() -> None:
    with pytest.raises(IgnorePathError):
        diffs({}, {}, ignore=["$.ok", "engine"])
    with pytest.raises(IgnorePathError):
        respond(b"{}", b"{}", ignore=["$[-1]"])
    with pytest.raises(TypeError):
        diffs({}, {}, ignore="$.engine")


# Whole responses


def test_status_mismatch_short_circuits() -> None:
    found = compare_responses(
        200, b'{"a": 1}', JSON, 500, b'{"a": 2, "b": 3}', JSON, tolerance=DEFAULT
    )
    assert found == [Diff("$", 200, 500, "status")]
    found = compare_responses(404, b"x", "text/plain", 410, b"x", "text/plain", tolerance=DEFAULT)
    assert found == [Diff("$", 404, 410, "status")]
    both_ignored = compare_responses(
        200, b"{}", JSON, 502, b"{}", JSON, tolerance=DEFAULT, ignore=["$"]
    )
    assert both_ignored == [Diff("$", 200, 502, "status")]


def test_json_bodies_compare_structurally() -> None:
    assert respond(b'{"a": 1, "b": [1, 2]}', b'{ "b":[1,2.0],\n"a":1.0 }') == []
    assert respond(b'{"a": 1}', b'{"a": 2}') == [Diff("$.a", 1, 2, "value")]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/problem+json",
        "application/vnd.api+json; version=2",
    ],
)
def test_json_content_types(content_type: str) -> None:
    assert is_json_content_type(content_type)
    assert respond(b'{"a": 1}', b'{"a": 1.0}', content_type, JSON) == []


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "text/html; charset=utf-8", "application/jsonp"]
)
def test_non_json_content_types(content_type: str | None) -> None:
    assert not is_json_content_type(content_type)
    found = respond(b'{"a": 1}', b'{"a": 1.0}', JSON, content_type)
    assert [diff.reason for diff in found] == ["bytes"]


def test_non_json_bodies_compare_as_bytes() -> None:
    assert respond(b"<p>hi</p>", b"<p>hi</p>", "text/html", "text/html") == []
    assert respond(b"", b"", JSON, JSON) == []  # e.g. a 204 that says it is JSON
    long_a, long_b = b"a" * 100 + b"x", b"a" * 100 + b"y" * 10
    [diff] = respond(long_a, long_b, "text/plain", "text/plain")
    assert diff == Diff(
        "$",
        {"length": 101, "preview": repr(b"a" * 64)},
        {"length": 110, "preview": repr(b"a" * 64)},
        "bytes",
    )
    json.dumps(asdict(diff))
    assert respond(b"abc", b"xyz", "text/plain", "text/plain", ignore=["$"]) == []


def test_unparseable_json_compares_as_bytes() -> None:
    [diff] = respond(b'{"a": 1', b'{"a": 1}')
    assert diff.reason == "bytes"
    assert diff.primary == {"length": 7, "preview": repr(b'{"a": 1')}
    assert respond(b"\xff\xfe{", b"\xff\xfe{") == []
    assert [d.reason for d in respond(b"\xff", b"{}")] == ["bytes"]


def test_deep_documents_do_not_hit_the_recursion_limit() -> None:
    a: Any = 1
    b: Any = 2
    for _ in range(5000):
        a, b = [a], [b]
    [diff] = diffs(a, b)
    assert diff.path == "$" + "[0]" * 5000


# Caps and summaries


def test_max_diffs_caps_the_result() -> None:
    a = {"xs": list(range(100)), **{f"k{i}": i for i in range(100)}}
    b = {"xs": [x + 1000 for x in range(100)], **{f"j{i}": i for i in range(100)}}
    assert len(diffs(a, b)) == 50
    assert len(diffs(a, b, max_diffs=3)) == 3
    assert diffs([1, 2], [2, 3], max_diffs=1) == [Diff("$[0]", 1, 2, "value")]
    assert len(diffs(a, b, max_diffs=1000)) == 300
    with pytest.raises(ValueError, match="max_diffs"):
        diffs(a, b, max_diffs=0)


def test_big_values_are_summarised() -> None:
    big_object = {f"key{i}": i for i in range(12)}
    big_array = list(range(500))
    a = {"o": big_object, "a": big_array, "s": "x" * 1000, "gone": {"k": list(range(100))}}
    b = {"o": big_array, "a": "short", "s": "y" * 1000}
    found = diffs(a, b)
    assert found == [
        Diff("$.gone", "<object with 1 key>", MISSING, "missing key"),
        Diff("$.o", "<object with 12 keys>", "<array of 500>", "type"),
        Diff("$.a", "<array of 500>", "short", "type"),
        Diff("$.s", "x" * 120 + "... <1000 chars>", "y" * 120 + "... <1000 chars>", "value"),
    ]
    assert len(json.dumps([asdict(diff) for diff in found], allow_nan=False)) < 1000


def test_small_containers_are_copied_as_json() -> None:
    inner = (1, 2)
    [diff] = diffs({"a": {"t": inner}}, {"a": {"t": "x"}})
    assert diff == Diff("$.a.t", [1, 2], "x", "type")
    [diff] = diffs({"a": [math.nan]}, {"a": {}})
    assert diff.primary == "<array of 1>"  # not strict JSON inline, so summarised


# The demo backends


STRATEGIES = ("sma_crossover", "rsi_mean_reversion", "momentum", "buy_and_hold")


def backend_outputs(strategy: str, symbol: str) -> tuple[dict[str, Any], dict[str, Any]]:
    kwargs: dict[str, Any] = {"symbol": symbol, "start": date(2018, 1, 1), "end": date(2022, 6, 30)}
    legacy = legacy_engine.run_backtest(strategy, **kwargs)
    new = new_engine.run_backtest(strategy, **kwargs)
    return (
        {**asdict(legacy), "engine": legacy_engine.ENGINE_NAME},
        {**asdict(new), "engine": new_engine.ENGINE_NAME},
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("symbol", ["AAPL", "TSLA"])
def test_demo_backends_agree_within_one_percent(strategy: str, symbol: str) -> None:
    legacy, new = backend_outputs(strategy, symbol)
    assert compare_json(legacy, new, tolerance=Tolerance(relative=0.01), ignore=["$.engine"]) == []
    assert compare_json(legacy, new, tolerance=DEFAULT) == [
        Diff("$.engine", "legacy-simulator", "trade-engine", "value")
    ]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_demo_backends_skewed_sharpe_is_a_diff(strategy: str) -> None:
    legacy, new = backend_outputs(strategy, "MSFT")
    assert new["sharpe_ratio"] != 0
    skewed = {**new, "sharpe_ratio": new["sharpe_ratio"] * 1.05}
    found = compare_json(legacy, skewed, tolerance=Tolerance(relative=0.01), ignore=["$.engine"])
    assert found == [
        Diff("$.sharpe_ratio", legacy["sharpe_ratio"], skewed["sharpe_ratio"], "value")
    ]
    reverse = compare_json(skewed, legacy, tolerance=DEFAULT, ignore=["$.engine"])
    assert paths(reverse) == ["$.sharpe_ratio"]


def test_demo_backends_as_response_bodies() -> None:
    legacy, new = backend_outputs("momentum", "AAPL")
    found = compare_responses(
        200,
        json.dumps(legacy).encode(),
        "application/json",
        200,
        json.dumps({**new, "total_trades": new["total_trades"] + 1}).encode(),
        "application/json; charset=utf-8",
        tolerance=DEFAULT,
        ignore=["$.engine"],
    )
    assert paths(found) == ["$.total_trades"]
