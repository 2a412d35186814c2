"""One process assembled from the settings (``Gateway``): started and stopped as one, and
switched to new settings by ``apply``, which builds only what changed and leaves the
running parts alone when building fails."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import respx
from starlette.testclient import TestClient

from cutover.config import load_settings
from cutover.ops.gateway import Gateway
from tests.ops.conftest import (
    ADMIN,
    AUTH,
    PROXY,
    STRATEGIES,
    WEBHOOK,
    ByPort,
    write_config,
    write_migrations,
)

# A state file as the version before migrations wrote it: one rollout, paused at 37.5 %.
SINGLE_ROLLOUT = {
    "version": 1,
    "phase": "paused",
    "weight": 37.5,
    "baseline_memory_bytes": 104857600.0,
    "last_legacy_p95": 0.12,
    "reason": "set by an operator",
    "failure": None,
    "history": [
        {"at": 1763780000.0, "from_phase": None, "to_phase": "progressing", "from_weight": None,
         "to_weight": 10.0, "reason": "no saved state: starting", "actor": "startup",
         "kind": "start", "failure": None},
        {"at": 1763780100.0, "from_phase": "progressing", "to_phase": "paused",
         "from_weight": 10.0, "to_weight": 37.5, "reason": "set by an operator",
         "actor": "operator", "kind": "set_weight", "failure": None},
    ],
}  # fmt: skip


def test_the_parts_share_one_set_of_migrations_and_one_control(gateway: Gateway) -> None:
    migrations = gateway.migrations
    assert gateway.control.migrations is migrations is gateway.guards.migrations
    assert migrations.listeners == [gateway.fanout.on_transition]
    assert migrations.sync_listeners == [gateway.fanout.on_sync]
    default = migrations.get("default")
    assert default.listeners is migrations.listeners
    assert default.sync_listeners is migrations.sync_listeners
    assert gateway.proxy.splitter.migrations["default"].weight == default.weight == 10
    assert gateway.reloader is not None and gateway.control.ready is False


def test_without_a_config_file_there_is_no_reloader(
    config_path: Path, router: respx.MockRouter
) -> None:
    transport = httpx.MockTransport(router.async_handler)
    gateway = Gateway(load_settings(config_path), transport=transport, side_transport=transport)
    assert gateway.reloader is None
    with TestClient(ByPort(gateway)) as client:  # starts and stops all the same
        assert client.get(f"{ADMIN}/readyz").json() == {"status": "ready"}


def test_started_it_is_ready_with_a_guard_and_the_webhook(gateway: Gateway) -> None:
    with TestClient(ByPort(gateway)) as client:
        assert gateway.control.ready
        assert gateway.control.guard is gateway.guards.guard is not None
        assert gateway.fanout.webhook is not None and gateway.fanout.webhook.url == WEBHOOK
        assert client.get(f"{ADMIN}/readyz").status_code == 200
    assert not gateway.control.ready
    assert not gateway.coordination.leading  # another worker may lead the guard now


def test_apply_rebuilds_only_what_changed(
    client: TestClient, gateway: Gateway, config_path: Path
) -> None:
    proxy = gateway.proxy
    upstreams, guard, breakers = proxy.upstreams, gateway.guards.guard, proxy.breakers
    write_config(config_path, deprecation={"deprecated_at": "2026-12-01T00:00:00Z"})
    client.portal.call(gateway.apply, load_settings(config_path))
    assert proxy.upstreams is upstreams and gateway.guards.guard is guard
    assert proxy.breakers is breakers
    assert gateway.settings.deprecation is not None and proxy.settings is gateway.settings

    write_config(config_path, guard={"interval": 30, "webhook": "http://hooks.test/other"})
    client.portal.call(gateway.apply, load_settings(config_path))
    assert proxy.upstreams is upstreams  # the backends did not change
    assert gateway.guards.guard is not guard and gateway.control.guard is gateway.guards.guard
    assert gateway.guards.guard.config.interval == 30
    assert gateway.fanout.webhook is not None
    assert gateway.fanout.webhook.url == "http://hooks.test/other"

    write_config(config_path, timeouts={"read": 3}, breaker={"failures": 3})
    client.portal.call(gateway.apply, load_settings(config_path))
    assert proxy.upstreams is not upstreams and proxy.breakers["new"] is not breakers["new"]
    assert proxy.forwarder.breakers is proxy.breakers
    assert client.get(f"{ADMIN}/status", headers=AUTH).json()["weight"] == 10


def test_apply_keeps_the_rollouts_live_weight_and_takes_its_new_rules(
    client: TestClient, gateway: Gateway, config_path: Path
) -> None:
    write_config(config_path, split={"weight": 40, "sticky": "header:X-User-Id"},
                 rollout={"stages": [10, 20, 100], "hold": 5},
                 guard={"failures_to_rollback": 4, "webhook": WEBHOOK})  # fmt: skip
    client.portal.call(gateway.apply, load_settings(config_path))
    default = gateway.migrations.get("default")
    assert gateway.proxy.splitter.migrations["default"].weight == default.weight == 10
    assert default.next_weight() == 20 and default.hold() == 5
    assert (default.failures_to_rollback, default.manual_weight) == (4, 40)


def test_a_single_rollout_state_file_is_carried_over_into_the_default_migration(
    config_path: Path, router: respx.MockRouter, monkeypatch
) -> None:
    state_file = config_path.parent / "state.json"
    state_file.write_text(json.dumps(SINGLE_ROLLOUT))
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", "s3cret-token")
    transport = httpx.MockTransport(router.async_handler)
    gateway = Gateway(load_settings(config_path), config_path=config_path, transport=transport,
                      side_transport=transport)  # fmt: skip
    default = gateway.migrations.get("default")
    # Phase and weight kept (not split.weight's 10, not the first stage), history and all.
    assert (default.phase, default.weight) == ("paused", 37.5)
    assert default.state.baseline_memory_bytes == 104857600.0
    assert [t.kind for t in default.state.history] == ["start", "set_weight"]
    assert gateway.proxy.splitter.migrations["default"].weight == 37.5
    registry = gateway.metrics.registry
    assert registry.get_sample_value("cutover_split_weight", {"migration": "default"}) == 37.5
    assert json.loads(state_file.read_text()) == SINGLE_ROLLOUT  # read, not rewritten at start
    with TestClient(ByPort(gateway)) as client:
        status = client.get(f"{ADMIN}/status", headers=AUTH).json()
        assert (status["phase"], status["weight"], status["reason"]) == (
            "paused", 37.5, "set by an operator",
        )  # fmt: skip
        resumed = client.post(f"{ADMIN}/rollout/resume", headers=AUTH).json()
        assert (resumed["phase"], resumed["weight"]) == ("progressing", 37.5)
    # The next save writes version 2, the old history under the default migration.
    saved = json.loads(state_file.read_text())
    assert saved["version"] == 2 and list(saved["migrations"]) == ["default"]
    history = saved["migrations"]["default"]["history"]
    assert history[:2] == SINGLE_ROLLOUT["history"]
    assert [t["kind"] for t in history] == ["start", "set_weight", "resume"]


def test_a_single_rollout_state_file_stays_when_migrations_are_listed(
    config_path: Path, router: respx.MockRouter, monkeypatch
) -> None:
    """A config that names its migrations has no ``default``: those start fresh, and the
    old rollout's state and history stay in the file."""
    (config_path.parent / "state.json").write_text(json.dumps(SINGLE_ROLLOUT))
    write_migrations(config_path, STRATEGIES)
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", "s3cret-token")
    transport = httpx.MockTransport(router.async_handler)
    gateway = Gateway(load_settings(config_path), transport=transport, side_transport=transport)
    strategies = gateway.migrations.get("strategies")
    assert (strategies.phase, strategies.weight) == ("progressing", 25)
    saved = gateway.migrations.book.store.load()
    assert saved is not None and list(saved) == ["default", "strategies"]
    assert (saved["default"].phase, saved["default"].weight) == ("paused", 37.5)
    assert len(saved["default"].history) == 2
    with TestClient(ByPort(gateway)) as client:
        assert client.get(f"{PROXY}/x").text == "legacy"  # outside every migration
