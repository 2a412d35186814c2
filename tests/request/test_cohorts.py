"""cutover.request.cohorts: each kind of cohort matched against a request, the query decoded
once per RFC 3986, regexes anchored and capped, the first matching cohort deciding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cutover.config import CohortConfig
from cutover.config.cohorts import MAX_SUBJECT
from cutover.request.cohorts import (
    ADDRESSES_KEPT,
    Cohort,
    Cohorts,
    client_address,
    query_values,
)

CLIENT = ("203.0.113.7", 5000)


def cohorts(*configs: dict[str, Any]) -> Cohorts:
    return Cohorts([CohortConfig.model_validate(c) for c in configs])


def chosen(
    group: Cohorts,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    client: tuple[str, int] | None = CLIENT,
    sticky: bytes | None = None,
) -> str | None:
    cohort = group.choose(headers or [], query, client, sticky)
    return None if cohort is None else cohort.label


def test_query_values_are_decoded_once_and_plus_stays_plus() -> None:
    wanted = frozenset({b"version", b"q", b"use new"})
    found = query_values(b"version=%32&q=a+b%2Bc&use%20new=%2541&other=1", wanted)
    # %2541 is "%41" decoded once, not "A"; "+" is a plus, not a space (RFC 3986).
    assert found == {b"version": [b"2"], b"q": [b"a+b+c"], b"use new": [b"%41"]}


def test_query_values_keep_every_value_of_a_repeated_parameter() -> None:
    found = query_values(b"v=1&x&v=2&v=&v", frozenset({b"v", b"x"}))
    assert found == {b"v": [b"1", b"2", b"", b""], b"x": [b""]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"use_new_executor=true", "0"),
        (b"use_new_executor=%74rue", "0"),  # percent-encoded letters
        (b"use%5Fnew%5Fexecutor=true", "0"),  # an encoded name
        (b"version=2", "1"),
        (b"version=1&version=2", "1"),  # repeated: any value matches
        (b"version=1", "v1"),
        (b"use_new_executor=TRUE", None),  # exact: case matters
        (b"use_new_executor=true%20", None),
        (b"version=2.0", None),
        (b"", None),
        (b"x=version=2", None),
    ],
)
def test_query_cohorts(query: bytes, expected: str | None) -> None:
    group = cohorts(
        {"query": {"use_new_executor": "true"}, "backend": "new"},
        {"query": {"version": "2"}, "backend": "new"},
        {"query": {"version": "1"}, "backend": "legacy", "name": "v1"},
    )
    assert chosen(group, query) == expected


def test_every_name_of_a_mapping_must_match() -> None:
    group = cohorts({"query": {"a": "1", "b": "2"}, "backend": "new"})
    assert chosen(group, b"a=1&b=2") == "0"
    assert chosen(group, b"b=2&a=1") == "0"
    assert chosen(group, b"a=1") is None
    assert chosen(group, b"a=1&b=3") is None


def test_a_non_utf8_value_compares_as_bytes() -> None:
    group = cohorts({"query": {"name": "é"}, "backend": "new"},
                    {"query": {"name": {"regex": "caf."}}, "backend": "legacy"})  # fmt: skip
    assert chosen(group, b"name=%C3%A9") == "0"
    assert chosen(group, b"name=%E9") is None  # Latin-1 é: not the UTF-8 the config means
    assert chosen(group, b"name=caf%C3%A9") == "1"
    assert chosen(group, b"name=caf%FF") is None


def test_header_cohorts_match_any_line_of_the_header_case_insensitively() -> None:
    group = cohorts({"header": {"X-Beta-Tester": "yes"}, "backend": "new"})
    assert chosen(group, headers=[(b"x-beta-tester", b"yes")]) == "0"
    lines = [(b"x-beta-tester", b"no"), (b"x-other", b"yes"), (b"x-beta-tester", b"yes")]
    assert chosen(group, headers=lines) == "0"
    assert chosen(group, headers=[(b"x-beta-tester", b"YES")]) is None
    assert chosen(group, headers=[(b"x-other", b"yes")]) is None


def test_cookie_cohorts_read_every_cookie_header_and_pair() -> None:
    group = cohorts({"cookie": {"beta": "1"}, "backend": "new"})
    assert chosen(group, headers=[(b"cookie", b"a=b; beta=1")]) == "0"
    assert chosen(group, headers=[(b"cookie", b"a=b"), (b"cookie", b'beta="1"')]) == "0"
    assert chosen(group, headers=[(b"cookie", b"beta=0; beta=1")]) == "0"
    assert chosen(group, headers=[(b"cookie", b"Beta=1")]) is None  # names are case-sensitive
    assert chosen(group, headers=[(b"cookie", b"xbeta=1")]) is None
    assert chosen(group, headers=[(b"x-beta", b"1")]) is None


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.20.3.4", "0"),
        ("::ffff:10.20.3.4", "0"),  # an IPv4 client on a dual-stack socket
        ("10.21.0.1", None),
        ("2001:db8::1", "0"),
        ("2001:db9::1", None),
        ("testclient", None),  # not an address (Starlette's TestClient)
    ],
)
def test_network_cohorts_use_the_client_address(address: str, expected: str | None) -> None:
    group = cohorts({"network": ["10.20.0.0/16", "2001:db8::/32"], "backend": "new"})
    assert chosen(group, client=(address, 1)) == expected


def test_a_client_seen_again_is_matched_the_same_and_few_addresses_are_kept() -> None:
    group = cohorts({"network": ["10.20.0.0/16"], "backend": "new"})
    for _ in range(2):  # the second time from what was kept
        assert [chosen(group, client=(a, 1)) for a in ("10.20.0.1", "10.9.0.1", "x")] == [
            "0", None, None,
        ]  # fmt: skip
    outside = [chosen(group, client=(f"10.{i >> 8}.{i & 255}.1", 1)) for i in range(6000)]
    assert outside.count("0") == 256 and len(group._addresses) <= ADDRESSES_KEPT  # 10.20.x.1


def test_no_client_address_is_in_no_network() -> None:
    assert client_address(None) is None
    assert chosen(cohorts({"network": ["0.0.0.0/0"], "backend": "new"}), client=None) is None


def test_users_file_cohorts_match_the_sticky_key(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("alice\nbøb\n")
    group = cohorts({"users_file": str(users), "backend": "new"})
    assert chosen(group, sticky=b"alice") == "0"
    assert chosen(group, sticky="bøb".encode()) == "0"
    assert chosen(group, sticky=b"carol") is None
    assert chosen(group, sticky=None) is None
    assert chosen(group, sticky=b"alic") is None


def test_a_regex_is_anchored_at_both_ends() -> None:
    group = cohorts({"header": {"X-Version": {"regex": "2|3"}}, "backend": "new"})
    assert chosen(group, headers=[(b"x-version", b"2")]) == "0"
    assert chosen(group, headers=[(b"x-version", b"3")]) == "0"
    # Unanchored, "2|3" would match both of these (search, or match at the start only).
    assert chosen(group, headers=[(b"x-version", b"23")]) is None
    assert chosen(group, headers=[(b"x-version", b"v3")]) is None


def test_a_regex_never_matches_a_value_over_the_cap() -> None:
    group = cohorts({"header": {"X-Id": {"regex": "a*"}}, "backend": "new"})
    assert chosen(group, headers=[(b"x-id", b"a" * MAX_SUBJECT)]) == "0"
    assert chosen(group, headers=[(b"x-id", b"a" * (MAX_SUBJECT + 1))]) is None


def test_the_first_matching_cohort_decides() -> None:
    group = cohorts(
        {"header": {"X-Beta": "1"}, "backend": "legacy", "name": "opted-out"},
        {"network": ["0.0.0.0/0"], "backend": "new", "name": "everyone"},
    )
    assert chosen(group, headers=[(b"x-beta", b"1")]) == "opted-out"
    assert chosen(group) == "everyone"


def test_a_cohort_keeps_its_backend_and_rollback_choice() -> None:
    config = CohortConfig.model_validate(
        {"cookie": {"beta": "1"}, "backend": "new", "survive_rollback": True, "name": "beta"}
    )
    cohort = Cohort.from_config(config, 4)
    assert (cohort.label, cohort.backend, cohort.survive_rollback) == ("beta", "new", True)


def test_only_what_some_cohort_reads_is_read() -> None:
    group = cohorts({"header": {"X-Beta": "1"}, "backend": "new"})
    assert group.query_names == frozenset() and group.cookie_names == frozenset()
    assert not group.reads_address
    # A query is not parsed for a migration whose cohorts read none: a bad one is ignored.
    assert chosen(group, b"%%%&&==", headers=[(b"x-beta", b"1")]) == "0"
