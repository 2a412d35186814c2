"""The URL a request is sent to on a backend."""

from __future__ import annotations

from cutover.request.target import target_url


def test_the_raw_path_and_query_are_kept() -> None:
    scope = {"path": "/a b", "raw_path": b"/a%20b/%2F", "query_string": b"x=1&y=%41"}
    assert target_url("http://new.test", scope) == "http://new.test/a%20b/%2F?x=1&y=%41"


def test_without_a_raw_path_the_path_is_used() -> None:
    assert target_url("http://legacy.test:8080", {"path": "/p"}) == "http://legacy.test:8080/p"


def test_an_empty_query_adds_no_question_mark() -> None:
    scope = {"path": "/p", "raw_path": b"/p", "query_string": b""}
    assert target_url("http://x", scope) == "http://x/p"
