"""The guard leader judges the fleet's summed traffic (``guard.source: embedded`` over
Redis), with real processes: one ``redis-server``, both demo backends and three proxies.
All the traffic goes through the two hosts that do not lead, none through the leader: a
fault on new is still caught, by the leader, and its rollback is seen by every host.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import (
    Backends,
    ProxyPorts,
    ProxyProcess,
    TrafficDriver,
    running_backends,
    wait_until,
    write_config,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "e2e-admin-token-0123456789"
FAULTS_TOKEN = "e2e-faults-token-0123456789"
DEADLINE = 20.0  # for anything the guard decides (normally 1-4 s)
FOLLOW = 3.0  # for a host to follow a change (poll: 0.5 s)


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    with running_backends(tmp_path, FAULTS_TOKEN) as running:
        yield running


def host_config(
    backends: Backends, redis_server: RedisServer, ports: ProxyPorts, host: str, tmp_path: Path
) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {"legacy": {"url": backends.legacy.url}, "new": {"url": backends.new.url}},
        "split": {"weight": 10, "sticky": "header:X-User-Id"},
        # A long hold: the rollout stays at 10 % while the test watches the checks pass.
        "rollout": {"stages": [10, 50, 100], "hold": 120},
        "guard": {"interval": 0.5, "window": 3, "min_requests": 20, "failures_to_rollback": 2},
        "state": {
            "backend": "redis", "url": redis_server.url, "key_prefix": "cutover:e2e",
            "cache_path": str(tmp_path / f"{host}.cache.json"), "poll": 0.5, "lease": 3,
            "host_id": host,
        },
    }  # fmt: skip


def start_hosts(
    names: list[str], backends: Backends, redis_server: RedisServer, tmp_path: Path
) -> list[ProxyProcess]:
    """The proxies, started together, each with its own config file."""
    proxies = []
    for name in names:
        directory = tmp_path / name
        directory.mkdir()
        ports = ProxyPorts.pick()
        config_path = directory / "cutover.yaml"
        write_config(config_path, host_config(backends, redis_server, ports, name, directory))
        proxy = ProxyProcess(directory, config_path, ports, ADMIN_TOKEN)
        proxy.companions = [backends.legacy, backends.new]
        proxies.append(proxy)
    for proxy in proxies:
        proxy.spawn()
    for proxy in proxies:
        proxy.wait_http_ok(f"{proxy.admin_url}/readyz")
    return proxies


def leads(proxy: ProxyProcess) -> bool:
    return proxy.metric("cutover_guard_leader") == 1


def test_a_fault_seen_only_through_the_other_hosts_is_rolled_back_by_the_leader(
    backends: Backends, redis_server: RedisServer, tmp_path: Path
) -> None:
    hosts: list[ProxyProcess] = []
    drivers: list[TrafficDriver] = []
    try:
        hosts += start_hosts(["host-a"], backends, redis_server, tmp_path)
        leader = hosts[0]
        wait_until(lambda: leads(leader), DEADLINE, "host-a to lead the guard", leader)
        hosts += start_hosts(["host-b", "host-c"], backends, redis_server, tmp_path)
        others = hosts[1:]
        for proxy in others:
            drivers.append(TrafficDriver(proxy.url, rate=80, workers=8))
            drivers[-1].start()

        def error_rate_checked(result: str) -> dict[str, Any] | None:
            status = leader.status()
            check = status["checks"].get("error_rate", {})
            return status if check.get("result") == result else None

        # The leader judges traffic it never served: its check passes on the others'.
        wait_until(lambda: error_rate_checked("pass"), DEADLINE, "a passing check", *hosts)
        backends.faults.set(error_rate=0.5)
        status = wait_until(
            lambda: leader.status()["phase"] == "rolled_back" and leader.status(),
            DEADLINE, "the leader to roll back", *hosts,
        )  # fmt: skip
        assert status["failure"]["check"] == "error_rate", status
        assert status["failure"]["value"] > 0.05, status["failure"]
        for proxy in others:
            wait_until(
                lambda proxy=proxy: proxy.status()["phase"] == "rolled_back",
                FOLLOW, "every host to follow the rollback", proxy,
            )  # fmt: skip
        followed = time.monotonic()
        assert leader.metric("cutover_requests_total") == 0, "the leader served no request"
        # One rollback, the leader's, in every host's history.
        histories = [proxy.status()["history"] for proxy in hosts]
        assert histories[0] == histories[1] == histories[2], histories
        rollbacks = [t for t in histories[0] if t["kind"] == "rollback"]
        assert len(rollbacks) == 1, histories[0]
        assert (rollbacks[0]["actor"], rollbacks[0]["host"]) == ("guard", "host-a"), rollbacks
        for driver in drivers:
            replies = driver.wait_for_replies(followed, 40, timeout=DEADLINE)
            assert {(r.backend, r.status) for r in replies} == {("legacy", 200)}
    finally:
        for driver in drivers:
            driver.stop()
        for proxy in hosts:
            proxy.close()
