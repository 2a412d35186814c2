"""cutover.config.migrations: the migrations list, the default migration of a config without
one, and the checks across migrations, routes and backends."""

from __future__ import annotations

from typing import Any

import pytest

from cutover.config import parse_settings
from tests.config import BACKENDS, problems

TRADE = {
    "name": "trade-engine",
    "match": {"prefix": "/api/v1/backtests/", "methods": ["post"]},
    "from": "legacy",
    "to": "new",
    "rollout": {"stages": [10, 50, 100], "hold": 300},
    "guard": {"max_latency_ratio": 1.5},
    "deprecation": {"deprecated_at": "2026-12-01", "sunset_at": "2027-06-01"},
    "shadow": {"sample": 0.2},
}
STRATEGIES = {
    "name": "strategies",
    "match": {"prefix": "/api/v1/strategies"},
    "from": "legacy",
    "to": "new",
}


def config(*migrations: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"backends": BACKENDS, "migrations": list(migrations), **sections}


def test_migrations_are_read_in_config_order_with_their_own_settings() -> None:
    settings = parse_settings(config(TRADE, STRATEGIES, split={"sticky": "header:X-User-Id"}))
    trade, strategies = settings.migration_list
    assert [trade.name, strategies.name] == ["trade-engine", "strategies"]
    assert (trade.source, trade.target, trade.match.methods) == ("legacy", "new", ["POST"])
    assert trade.rollout is not None and [s.weight for s in trade.rollout.stages] == [10, 50, 100]
    # Unset keys come from the top level: stickiness from split, thresholds from guard.
    assert strategies.sticky == "header:X-User-Id" and strategies.rollout is None
    guard = trade.guard.over(settings.guard)
    assert guard.max_latency_ratio == 1.5
    assert guard.max_error_rate == settings.guard.max_error_rate
    assert strategies.guard.over(settings.guard) == settings.guard


def test_a_config_without_migrations_is_one_migration_named_default_over_every_path() -> None:
    settings = parse_settings(
        {"backends": BACKENDS, "split": {"weight": 20, "sticky": "cookie:u"},
         "rollout": {"stages": [10, 100]}}
    )  # fmt: skip
    (default,) = settings.migration_list
    assert (default.name, default.match.prefix, default.match.methods) == ("default", "/", None)
    assert (default.source, default.target, default.weight) == ("legacy", "new", 20)
    assert default.sticky == "cookie:u" and default.rollout == settings.rollout


def test_any_number_of_named_backends() -> None:
    backends = {"old": {"url": "http://old.test"}, "v2": {"url": "http://v2.test"},
                "v3": {"url": "http://v3.test"}}  # fmt: skip
    migrations = [
        {"name": "a", "match": {"prefix": "/a"}, "from": "old", "to": "v2"},
        {"name": "b", "match": {"prefix": "/b"}, "from": "old", "to": "v3"},
    ]
    settings = parse_settings(
        {"backends": backends, "default_backend": "old", "migrations": migrations}
    )
    assert [(m.source, m.target) for m in settings.migration_list] == [("old", "v2"), ("old", "v3")]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": "Trade"}, "migrations.0.name: 'Trade' is not a migration name"),
        ({"to": "newer"}, "migrations.0.to: no backend named 'newer' (backends: legacy, new)"),
        ({"to": "legacy"}, "migrations.0: from and to are both 'legacy'"),
        ({"match": {"prefix": "api"}}, "migrations.0.match.prefix: must start with '/'"),
        ({"match": {"prefix": "/a?b=1"}}, "migrations.0.match.prefix: must be a path"),
        ({"guard": {"interval": 1}}, "migrations.0.guard.interval: unknown key"),
        ({"weight": 101}, "migrations.0.weight: must be between 0 and 100"),
    ],
)
def test_a_bad_migration_is_refused_naming_the_field(change: dict[str, Any], expected: str) -> None:
    found = problems(config({**TRADE, **change}))
    assert any(problem.startswith(expected) for problem in found), found


def test_two_migrations_with_one_name_are_refused() -> None:
    found = problems(config(TRADE, {**STRATEGIES, "name": "trade-engine"}))
    assert found == ["migrations.1.name: 'trade-engine' is also the name of migrations.0"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"prefix": "/api/v1"}, {"prefix": "/api/v1"}),
        ({"prefix": "/api/v1"}, {"prefix": "/api/v1/"}),  # both match everything below
        ({"prefix": "/api", "methods": ["GET", "POST"]}, {"prefix": "/api", "methods": ["POST"]}),
        ({"prefix": "/api", "methods": ["GET"]}, {"prefix": "/api"}),
    ],
)
def test_two_migrations_with_the_same_prefix_and_overlapping_methods_are_a_conflict(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    one = {**STRATEGIES, "name": "one", "match": first}
    two = {**STRATEGIES, "name": "two", "match": second}
    (found,) = problems(config(one, two))
    assert found.startswith("migrations: migrations one and two both match")


def test_the_same_prefix_with_other_methods_is_two_migrations() -> None:
    reads = {**STRATEGIES, "name": "reads", "match": {"prefix": "/api", "methods": ["GET"]}}
    writes = {**STRATEGIES, "name": "writes", "match": {"prefix": "/api", "methods": ["POST"]}}
    assert len(parse_settings(config(reads, writes)).migration_list) == 2


def test_with_migrations_the_single_rollout_keys_are_refused() -> None:
    found = problems(config(TRADE, rollout={"stages": [50, 100]}, split={"weight": 5}))
    assert found == [
        "rollout: with migrations, each migration has its own rollout",
        "split.weight: with migrations, each migration has its own weight",
    ]


def test_every_backend_named_must_be_configured() -> None:
    found = problems(
        config(TRADE, default_backend="old", routes=[{"prefix": "/x", "backend": "v9"}])
    )
    assert found == [
        "default_backend: no backend named 'old' (backends: legacy, new)",
        "routes.0.backend: no backend named 'v9' (backends: legacy, new)",
    ]


def test_without_migrations_legacy_and_new_are_needed() -> None:
    found = problems({"backends": {"legacy": BACKENDS["legacy"]}})
    assert found == [
        "backends: without migrations, the default migration goes from legacy to new: add a "
        "backend named 'new', or list migrations"
    ]


def test_a_migration_without_deprecation_takes_the_top_level_one() -> None:
    top = {"deprecated_at": "2026-01-01"}
    settings = parse_settings(config(TRADE, STRATEGIES, deprecation=top))
    trade, strategies = settings.migration_list
    assert trade.deprecation is not None and trade.deprecation.deprecated_at.month == 12
    assert strategies.deprecation == settings.deprecation


def test_a_route_weight_under_no_migration_is_refused() -> None:
    routes = [{"prefix": "/reports", "weight": 30}, {"prefix": "/api/v1/strategies/x", "weight": 5}]
    found = problems(config(STRATEGIES, routes=routes))
    assert found == [
        "routes.0.weight: /reports is under no migration: a weight splits a migration's from "
        "and to; pin the route with backend instead"
    ]


def test_a_migration_can_turn_the_top_level_deprecation_off() -> None:
    top = {"deprecated_at": "2026-01-01"}
    settings = parse_settings(config({**STRATEGIES, "deprecation": False}, deprecation=top))
    assert settings.migration_list[0].deprecation is None
