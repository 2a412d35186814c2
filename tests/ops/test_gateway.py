"""One process assembled from the settings (``Gateway``): started and stopped as one, and
switched to new settings by ``apply``, which builds only what changed and leaves the
running parts alone when building fails."""

from __future__ import annotations

from pathlib import Path

import httpx
import respx
from starlette.testclient import TestClient

from cutover.config import load_settings
from cutover.ops.gateway import Gateway
from tests.ops.conftest import ADMIN, AUTH, WEBHOOK, ByPort, write_config


def test_the_parts_share_one_rollout_and_one_control(gateway: Gateway) -> None:
    assert gateway.control.rollout is gateway.rollout is gateway.guards.rollout
    assert gateway.rollout.listeners == [gateway.fanout.on_transition]
    assert gateway.rollout.sync_listeners == [gateway.fanout.on_sync]
    assert gateway.proxy.splitter.weight == gateway.rollout.weight == 10
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
    upstreams, guard, breaker = proxy.upstreams, gateway.guards.guard, proxy.breaker
    write_config(config_path, deprecation={"deprecated_at": "2026-12-01T00:00:00Z"})
    client.portal.call(gateway.apply, load_settings(config_path))
    assert proxy.upstreams is upstreams and gateway.guards.guard is guard
    assert proxy.breaker is breaker
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
    assert proxy.upstreams is not upstreams and proxy.breaker is not breaker
    assert client.get(f"{ADMIN}/status", headers=AUTH).json()["weight"] == 10


def test_apply_keeps_the_rollouts_live_weight_and_takes_its_new_rules(
    client: TestClient, gateway: Gateway, config_path: Path
) -> None:
    write_config(config_path, split={"weight": 40, "sticky": "header:X-User-Id"},
                 rollout={"stages": [10, 20, 100], "hold": 5},
                 guard={"failures_to_rollback": 4, "webhook": WEBHOOK})  # fmt: skip
    client.portal.call(gateway.apply, load_settings(config_path))
    assert gateway.proxy.splitter.weight == gateway.rollout.weight == 10
    assert gateway.rollout.next_weight() == 20 and gateway.rollout.hold() == 5
    assert (gateway.rollout.failures_to_rollback, gateway.rollout.manual_weight) == (4, 40)
