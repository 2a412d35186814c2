"""End to end: two real ``cutover run`` processes sharing one real redis-server, and the
operator's ``cutover status`` (a real subprocess) against either one: both hosts listed with
their addresses, version and last beat, the guard leader and its epoch; a host killed with
``kill -9`` leaves the list once its record expires (three polls)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.processes import (
    Backends,
    ProxyPorts,
    ProxyProcess,
    clean_env,
    cutover_command,
    running_backends,
    wait_until,
    write_config,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "e2e-admin-token-0123456789"
FAULTS_TOKEN = "e2e-faults-token-0123456789"
POLL = 0.5
DEADLINE = 15.0


def config_for(backends: Backends, ports: ProxyPorts, redis_url: str, host: str, tmp: Path):
    return {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {"legacy": {"url": backends.legacy.url}, "new": {"url": backends.new.url}},
        "split": {"weight": 10, "sticky": "header:X-User-Id"},
        "rollout": {"stages": [10, 50, 100], "hold": 600},
        "guard": {"interval": 0.5, "window": 3, "min_requests": 20},
        "state": {
            "backend": "redis", "url": redis_url, "key_prefix": "cutover:e2e-fleet",
            "cache_path": str(tmp / f"{host}-cache.json"), "poll": POLL, "lease": 3,
            "host_id": host,
        },
    }  # fmt: skip


def cutover_status(proxy: ProxyProcess, *args: str) -> str:
    done = subprocess.run(
        [*cutover_command(), "status", *args],
        env=clean_env(CUTOVER_ADMIN_URL=proxy.admin_url, CUTOVER_ADMIN_TOKEN=ADMIN_TOKEN),
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cutover_status_lists_the_fleet_and_its_leader(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with ExitStack() as stack:
        backends = stack.enter_context(running_backends(tmp_path, FAULTS_TOKEN))
        proxies: dict[str, ProxyProcess] = {}
        for host in ("proxy-a", "proxy-b"):
            directory = tmp_path / host
            directory.mkdir()
            ports = ProxyPorts.pick()
            config_path = directory / "cutover.yaml"
            write_config(config_path, config_for(backends, ports, redis_server.url, host, tmp_path))
            proxy = ProxyProcess(directory, config_path, ports, ADMIN_TOKEN)
            proxy.companions.append(backends.legacy)
            stack.callback(proxy.close)
            proxies[host] = proxy.start()
        a, b = proxies["proxy-a"], proxies["proxy-b"]

        def fleet_of(proxy: ProxyProcess) -> dict[str, Any] | None:
            fleet = json.loads(cutover_status(proxy, "--json"))["fleet"]
            ids = [host["id"] for host in fleet["hosts"]]
            return fleet if ids == ["proxy-a", "proxy-b"] and fleet["leader"] else None

        fleet = wait_until(lambda: fleet_of(b), DEADLINE, "both hosts and a leader", a, b)
        leader = fleet["leader"]
        assert leader["host"] in proxies
        assert leader["epoch"] >= 1
        by_id = {host["id"]: host for host in fleet["hosts"]}
        for host, proxy in proxies.items():
            assert by_id[host]["proxy"] == f"127.0.0.1:{proxy.ports.listen}"
            assert by_id[host]["admin"] == f"127.0.0.1:{proxy.ports.admin}"
            assert by_id[host]["last_seen_ago"] < 3 * POLL + 1
            assert by_id[host]["version"] == importlib.metadata.version("cutover")
        assert [h["local"] for h in fleet["hosts"]] == [False, True]  # b answered

        # What the operator reads: the migration, then the fleet block.
        text = cutover_status(a)
        assert text.splitlines()[0].startswith("NAME")
        fleet_block = text.split("\n\n")[-1].splitlines()
        assert fleet_block[0] == (
            f"fleet     redis {redis_server.url}, 2 hosts, answered by proxy-a"
        )
        assert fleet_block[1] == f"leader    {leader['host']} (epoch {leader['epoch']})"
        assert [line.split()[:3] for line in fleet_block[3:]] == [
            [host, f"127.0.0.1:{proxy.ports.listen}", f"127.0.0.1:{proxy.ports.admin}"]
            for host, proxy in proxies.items()
        ]

        # A host killed with kill -9 cannot say goodbye: its record expires.
        b.kill9()

        def only_a() -> bool:
            hosts = json.loads(cutover_status(a, "--json"))["fleet"]["hosts"]
            return [host["id"] for host in hosts] == ["proxy-a"]

        wait_until(only_a, DEADLINE, "the killed host to leave the list", a, b)
