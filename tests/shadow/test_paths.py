"""The JSON path language: formatting a difference's path, parsing and matching ignore paths."""

import pytest

from cutover.shadow.paths import (
    IgnorePathError,
    check_ignore_paths,
    compile_ignore,
    format_path,
    ignored,
    parse_pattern,
)


def is_ignored(path: tuple[str | int, ...], *ignore: str) -> bool:
    return ignored(path, compile_ignore(ignore))


# Formatting


def test_format_path() -> None:
    assert format_path([]) == "$"
    assert format_path(["items", 3, "price"]) == "$.items[3].price"
    assert format_path(["_a1", "B_2"]) == "$._a1.B_2"


def test_format_path_quotes_odd_keys() -> None:
    assert format_path(["odd key", "a-b", "é", "*", "", "1x"]) == (
        '$["odd key"]["a-b"]["é"]["*"][""]["1x"]'
    )
    assert format_path(["a", 0, 'say "hi"']) == '$.a[0]["say \\"hi\\""]'


# Parsing


def test_parse_pattern_steps() -> None:
    assert parse_pattern("$") == ()
    assert parse_pattern("$.meta.executed_at") == ("meta", "executed_at")
    assert parse_pattern("$.items[3].price") == ("items", 3, "price")
    assert parse_pattern('$["odd key"][0]') == ("odd key", 0)
    assert parse_pattern("$.x-y") == ("x-y",)  # a bare key runs to the next . or [


def test_wildcards_parse_apart_from_a_quoted_star() -> None:
    star, index = parse_pattern("$.*[*]")
    assert star != "*" and index != "*"
    assert parse_pattern('$["*"]') == ("*",)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("engine", "a path starts with \\$"),
        ("$.", "empty key at offset 1"),
        ("$..a", "empty key at offset 1"),
        ("$[x]", "unexpected '\\[' at offset 1"),
        ("$[-1]", "unexpected '\\[' at offset 1"),
        ('$["unterminated', "bad quoted key at offset 1"),
        ('$["a"x', "expected \\] at offset 5"),
        ("$[*", "unexpected '\\[' at offset 1"),
        ("$ a", "unexpected ' ' at offset 1"),
    ],
)
def test_bad_ignore_paths_raise(bad: str, message: str) -> None:
    with pytest.raises(IgnorePathError, match=message):
        parse_pattern(bad)
    with pytest.raises(IgnorePathError):
        check_ignore_paths(["$.ok", bad])
    assert issubclass(IgnorePathError, ValueError)


def test_good_ignore_paths_pass_the_check() -> None:
    check_ignore_paths(["$", "$.engine", "$.a[*].b", "$.*.t", '$["odd key"][3]', "$.x-y"])
    check_ignore_paths([])


def test_ignore_must_be_a_sequence_of_paths() -> None:
    with pytest.raises(TypeError):
        compile_ignore("$.engine")
    with pytest.raises(TypeError):
        check_ignore_paths("$.engine")


# Matching


def test_exact_paths_match_only_themselves() -> None:
    assert is_ignored((), "$")
    assert is_ignored(("meta", "host"), "$.meta.host")
    assert not is_ignored(("meta",), "$.meta.host")
    # a subtree is left out by the walk stopping at its root, not by the match
    assert not is_ignored(("meta", "host", "name"), "$.meta.host")
    assert not is_ignored(("meta", "host"))


def test_a_key_wildcard_matches_keys_and_an_index_wildcard_indexes() -> None:
    assert is_ignored(("s1", "timestamp"), "$.*.timestamp")
    assert is_ignored(("trades", 7, "id"), "$.trades[*].id")
    assert not is_ignored((0, "timestamp"), "$.*.timestamp")
    assert not is_ignored(("trades", "7", "id"), "$.trades[*].id")


def test_an_index_is_not_a_key() -> None:
    assert is_ignored(("xs", 1), "$.xs[1]")
    assert not is_ignored(("xs", "1"), "$.xs[1]")
    assert is_ignored(("1",), '$["1"]')
    assert not is_ignored((1,), '$["1"]')
    assert is_ignored(("*",), '$["*"]')
    assert not is_ignored(("other",), '$["*"]')


def test_any_pattern_may_match() -> None:
    assert is_ignored(("b",), "$.a", "$.b")
    assert not is_ignored(("c",), "$.a", "$.b")
