"""cutover_demo.new_backend.driver_config: the proxy child's copy of the config, with the
demo's addresses and holds shortened in proportion, and the example configs the demo runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cutover.config import load_settings
from cutover_demo.new_backend.driver_config import (
    DEMO_MIN_REQUESTS,
    MIN_HOLD,
    DemoConfigError,
    demo_config,
    holds,
    holds_line,
    without_carried,
    write_demo_config,
)
from cutover_demo.new_backend.driver_migrations import fault_target, fault_weight, migration_of
from cutover_demo.new_backend.driver_ports import Addresses
from cutover_demo.new_backend.driver_traffic import STRATEGIES_PATH, execute_request
from tests.processes import ROOT

MIGRATIONS = ROOT / "config" / "migrations.yaml"
CUTOVER = ROOT / "config" / "cutover.yaml"
ADDRESSES = Addresses(
    legacy_url="http://127.0.0.1:18001",
    new_url="http://127.0.0.1:18002",
    new_metrics_url="http://127.0.0.1:18002/metrics",
    listen=("127.0.0.1", 18080),
    admin=("127.0.0.1", 19180),
)


def raw(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_holds_shrink_in_proportion_so_schedules_stay_apart() -> None:
    config = demo_config(raw(MIGRATIONS), ADDRESSES)
    rollouts = {m["name"]: m["rollout"] for m in config["migrations"]}
    assert rollouts["trade-engine"] == {"stages": [10, 50, 100], "hold": 8.0}
    assert rollouts["strategies"] == {"stages": [25, 100], "hold": 16.0}
    assert holds(config) == {"trade-engine": 8.0, "strategies": 16.0}
    assert holds_line(config).endswith(": trade-engine 8 s, strategies 16 s")


def test_a_stage_of_its_own_hold_and_the_default_hold_shrink_too() -> None:
    rollout = {"stages": [{"weight": 10, "hold": 900}, {"weight": 50, "hold": 1}, 100]}
    config = demo_config({"migrations": [{"name": "m", "rollout": rollout}]}, ADDRESSES)
    short = config["migrations"][0]["rollout"]
    assert short == {
        "stages": [{"weight": 10, "hold": 24.0}, {"weight": 50, "hold": MIN_HOLD}, 100],
        "hold": 8.0,  # rollout's default of 300 s
    }
    assert holds(config) == {"m": 24.0}


def test_the_single_migration_config_keeps_the_demo_hold_of_old() -> None:
    config = demo_config(raw(CUTOVER), ADDRESSES)
    assert config["rollout"] == {"stages": [10, 50, 100], "hold": 8.0}
    assert holds(config) == {"default": 8.0}


def test_the_demo_addresses_go_into_the_copy_and_the_file_is_left_alone() -> None:
    original = raw(MIGRATIONS)
    config = demo_config(original, ADDRESSES)
    assert config["backends"] == {
        "legacy": {"url": "http://127.0.0.1:18001"},
        "new": {"url": "http://127.0.0.1:18002", "metrics_url": "http://127.0.0.1:18002/metrics"},
    }
    assert original == raw(MIGRATIONS)


def test_no_migration_asks_for_more_requests_than_the_demo_window_holds() -> None:
    migrations = [
        {"name": "a", "guard": {"min_requests": 500, "max_latency_ratio": 3}},
        {"name": "b", "guard": {"min_requests": 3}},
        {"name": "c", "guard": {"max_error_rate": 0.1}},
    ]
    guards = [m["guard"] for m in demo_config({"migrations": migrations}, ADDRESSES)["migrations"]]
    assert guards == [
        {"min_requests": DEMO_MIN_REQUESTS, "max_latency_ratio": 3},
        {"min_requests": 3},
        {"max_error_rate": 0.1},
    ]


def test_the_copy_of_the_single_migration_config_loads(tmp_path: Path) -> None:
    path, _ = write_demo_config(CUTOVER, ADDRESSES, tmp_path)
    copy, original = load_settings(path), load_settings(CUTOVER)
    assert copy.rollout is not None and copy.rollout.hold == 8.0
    assert copy.deprecation == original.deprecation  # its dates survive the round trip


def test_the_example_of_several_migrations_and_its_copy_load(tmp_path: Path) -> None:
    load_settings(MIGRATIONS)
    path, _ = write_demo_config(MIGRATIONS, ADDRESSES, tmp_path)
    load_settings(path)


def test_the_demo_traffic_reaches_both_example_migrations() -> None:
    # The documents GET /migrations will list for config/migrations.yaml, as far as the
    # demo reads them: its requests fall into both, and the fault goes into trade-engine.
    migrations = [
        {
            "name": m["name"],
            "match": {"prefix": m["match"]["prefix"], "methods": m["match"].get("methods")},
            "stages": [{"weight": w} for w in m["rollout"]["stages"]],
        }
        for m in raw(MIGRATIONS)["migrations"]
    ]
    assert migration_of("POST", execute_request()[0], migrations) == "trade-engine"
    assert migration_of("GET", STRATEGIES_PATH, migrations) == "strategies"
    target = fault_target(migrations)
    assert target is not None and target["name"] == "trade-engine"
    assert fault_weight(target) == 50


def test_the_variables_the_copy_carries_are_left_out_of_the_proxy_environment() -> None:
    environ = {
        "CUTOVER_BACKENDS__NEW__URL": "http://elsewhere:1",
        "cutover_backends__legacy__url": "http://elsewhere:2",
        "CUTOVER_BACKENDS__NEW__CA_FILE": "/ca.pem",
        "CUTOVER_ADMIN_TOKEN": "t",
    }
    assert without_carried(environ) == {
        "CUTOVER_BACKENDS__NEW__CA_FILE": "/ca.pem",
        "CUTOVER_ADMIN_TOKEN": "t",
    }


@pytest.mark.parametrize("text", ["- a list\n", "key: [unclosed\n"])
def test_a_config_that_cannot_be_read_again(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(DemoConfigError):
        write_demo_config(path, ADDRESSES, tmp_path)
