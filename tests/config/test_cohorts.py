"""cutover.config.cohorts: a migration's cohorts, each refused at the field it gets wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cutover.config import RegexConfig, parse_settings
from tests.config import BACKENDS, problems

THREE = {**BACKENDS, "other": {"url": "http://127.0.0.1:8003"}}


def config(*cohorts: dict[str, Any], **migration: Any) -> dict[str, Any]:
    engine = {"name": "trade-engine", "match": {"prefix": "/api/"}, "from": "legacy",
              "to": "new", "cohorts": list(cohorts), **migration}  # fmt: skip
    return {"backends": THREE, "migrations": [engine]}


def test_the_issues_cohorts_are_read_in_order(tmp_path: Path) -> None:
    users = tmp_path / "canary-users.txt"
    users.write_text("# the canary group\n  alice  \n\nbob\n# carol\n")
    settings = parse_settings(config(
        {"query": {"use_new_executor": "true"}, "backend": "new"},
        {"query": {"version": "1"}, "backend": "legacy", "name": "v1"},
        {"header": {"X-Beta-Tester": {"regex": "yes|y"}}, "backend": "new"},
        {"cookie": {"beta": "1"}, "backend": "new", "survive_rollback": True},
        {"network": ["10.20.0.0/16", "2001:db8::/32"], "backend": "new"},
        {"users_file": str(users), "backend": "new"},
        sticky="header:X-User-Id",
    ))  # fmt: skip
    cohorts = settings.migration_list[0].cohorts
    assert [c.kind for c in cohorts] == ["query", "query", "header", "cookie", "network",
                                         "users_file"]  # fmt: skip
    assert [c.label(i) for i, c in enumerate(cohorts)] == ["0", "v1", "2", "3", "4", "5"]
    assert cohorts[2].header == {"X-Beta-Tester": RegexConfig(regex="yes|y")}
    assert cohorts[3].survive_rollback and not cohorts[0].survive_rollback
    # Stripped, blank and comment lines skipped.
    assert cohorts[5].users_file is not None
    assert cohorts[5].users_file.keys == {"alice", "bob"}


def test_a_migration_without_cohorts_has_none() -> None:
    settings = parse_settings({"backends": BACKENDS})
    assert settings.migration_list[0].cohorts == []


@pytest.mark.parametrize(
    ("cohort", "expected"),
    [
        ({"query": {"v": "2"}, "backend": "other"},
         "migrations.0.cohorts.0.backend: 'other' is neither this migration's from (legacy) "
         "nor its to (new)"),
        ({"query": {"v": "2"}, "header": {"X-B": "1"}, "backend": "new"},
         "migrations.0.cohorts.0: set exactly one of query, header, cookie, network, "
         "users_file (found: query, header)"),
        ({"backend": "new"}, "migrations.0.cohorts.0: set exactly one of query, header, "
         "cookie, network, users_file (found: none)"),
        ({"header": {"X-B": {"regex": "("}}, "backend": "new"},
         "migrations.0.cohorts.0.header.X-B: regex: is not a valid regular expression: "
         "missing ), unterminated subpattern at position 0"),
        ({"header": {"X-B": {"regex": "a" * 513}}, "backend": "new"},
         "migrations.0.cohorts.0.header.X-B: regex: is 513 characters long; at most 512"),
        ({"header": {"X-B": 3}, "backend": "new"},
         "migrations.0.cohorts.0.header.X-B: must be a string, or {regex: PATTERN}"),
        ({"header": {"X-B": {"regex": "a", "flags": "i"}}, "backend": "new"},
         "migrations.0.cohorts.0.header.X-B: must be a string, or {regex: PATTERN}"),
        ({"header": {"Bad Name": "1"}, "backend": "new"},
         "migrations.0.cohorts.0.header: 'Bad Name' is not a valid header name"),
        ({"cookie": {}, "backend": "new"},
         "migrations.0.cohorts.0.cookie: must name at least one cookie"),
        ({"network": ["10.0.0.0/33"], "backend": "new"},
         "migrations.0.cohorts.0.network.0: value is not a valid IPv4 or IPv6 network"),
        ({"query": {"v": "2"}, "backend": "new", "name": "weight"},
         "migrations.0.cohorts.0: name: 'weight' is the label of requests no cohort decided"),
        ({"query": {"v": "2"}, "backend": "new", "color": "red"},
         "migrations.0.cohorts.0.color: unknown key"),
    ],
)  # fmt: skip
def test_a_bad_cohort_is_refused_naming_its_field(cohort: dict[str, Any], expected: str) -> None:
    assert problems(config(cohort)) == [expected]


def test_a_name_may_not_be_another_cohorts_index() -> None:
    named = {"query": {"v": "2"}, "backend": "new", "name": "1"}
    # The second cohort's label is its index, 1: both would count under one label.
    assert problems(config(named, {"query": {"v": "3"}, "backend": "new"})) == [
        "migrations.0.cohorts.1.name: '1' is also the label of cohorts.0"
    ]


def test_a_name_is_unique_within_the_migration() -> None:
    first = {"query": {"v": "2"}, "backend": "new", "name": "beta"}
    second = {"header": {"X-B": "1"}, "backend": "new", "name": "beta"}
    assert problems(config(first, second)) == [
        "migrations.0.cohorts.1.name: 'beta' is also the label of cohorts.0"
    ]


def test_a_users_file_must_be_readable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    cohort = {"users_file": str(missing), "backend": "new"}
    assert problems(config(cohort, sticky="client_ip")) == [
        f"migrations.0.cohorts.0.users_file: cannot read {missing}: No such file or directory"
    ]
    binary = tmp_path / "users.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    cohort = {"users_file": str(binary), "backend": "new"}
    assert problems(config(cohort, sticky="client_ip")) == [
        f"migrations.0.cohorts.0.users_file: {binary} is not UTF-8 text"
    ]


def test_a_users_file_needs_the_migrations_sticky_key(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("alice\n")
    cohort = {"users_file": str(users), "backend": "new"}
    assert problems(config(cohort)) == [
        "migrations.0.cohorts.0.users_file: a users file lists sticky keys, and this migration "
        "has none: set its sticky (header:NAME, cookie:NAME or client_ip) or split.sticky"
    ]
    # The migration's own sticky key, or the top level's, will do.
    parse_settings(config(cohort, sticky="cookie:uid"))
    top = config(cohort)
    top["split"] = {"sticky": "header:X-User-Id"}
    parse_settings(top)


def test_a_changed_users_file_makes_a_different_config(tmp_path: Path) -> None:
    """A reload re-reads the file, and sees the migration changed."""
    users = tmp_path / "users.txt"
    users.write_text("alice\n")
    data = config({"users_file": str(users), "backend": "new"}, sticky="client_ip")
    before = parse_settings(data)
    assert parse_settings(data).migration_list == before.migration_list
    users.write_text("alice\nbob\n")
    after = parse_settings(data)
    assert after.migration_list[0].cohorts[0].users_file.keys == {"alice", "bob"}
    assert after.migration_list != before.migration_list


def test_a_config_with_cohorts_dumps_as_it_was_written() -> None:
    cohort = {"header": {"X-B": {"regex": "y"}}, "backend": "new"}
    dumped = parse_settings(config(cohort)).model_dump(mode="json")
    assert dumped["migrations"][0]["cohorts"][0]["header"] == {"X-B": {"regex": "y"}}


@pytest.mark.parametrize("pattern", ["(a+)+b", "(x*)*", "(?:(?:[a-z]+))*", "id-(?:[0-9]*)+"])
def test_a_regex_that_can_backtrack_exponentially_is_refused(pattern: str) -> None:
    cohort = {"header": {"X-B": {"regex": pattern}}, "backend": "new"}
    [problem] = problems(config(cohort))
    assert problem.startswith(
        "migrations.0.cohorts.0.header.X-B: regex: repeats a group that is itself only a repetition"
    )


@pytest.mark.parametrize(
    "pattern", ["v[0-9]+(\\.[0-9]+)*", "(a{2})*", "(a++)+", "(?>a+)+", "(?:a|ab)*c", "yes|y"]
)
def test_a_regex_whose_repetitions_cannot_blow_up_is_accepted(pattern: str) -> None:
    settings = parse_settings(config({"header": {"X-B": {"regex": pattern}}, "backend": "new"}))
    [cohort] = settings.migration_list[0].cohorts
    assert cohort.header == {"X-B": RegexConfig(regex=pattern)}
