"""GET /fleet: with the file backend, this host (and whether it leads the guard); with Redis,
every live host of the deployment, the guard leader and its epoch, and a 503 naming the store
(with this host's own record) while Redis is unreachable."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from cutover.rollout.fleet import public_url
from cutover.rollout.hosts import cutover_version
from tests.ops.conftest import ADMIN, AUTH, TOKEN, ByPort, make_gateway, write_config
from tests.redis_server import RedisServer

DEADLINE = 10.0
HOST_FIELDS = {
    "id", "proxy", "admin", "version", "started_at", "last_seen", "last_seen_ago", "local",
}  # fmt: skip


def eventually(check: Callable[[], Any], what: str) -> Any:
    end = time.monotonic() + DEADLINE
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        time.sleep(0.05)


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


def test_the_file_backend_s_fleet_is_this_host(client: TestClient, gateway, tmp_path) -> None:
    assert problem(client.get(f"{ADMIN}/fleet"), 401)  # like every call but the probes

    def leading() -> dict | None:
        return client.get(f"{ADMIN}/fleet", headers=AUTH).json()["leader"]

    # The guard's first evaluation, as the gateway starts, takes the lead (no other worker).
    assert eventually(leading, "the guard to lead") == {"host": gateway.state.host, "epoch": None}
    fleet = client.get(f"{ADMIN}/fleet", headers=AUTH).json()
    assert fleet["backend"] == "file"
    assert fleet["store"] == {"up": True, "url": None, "path": str(tmp_path / "state.json")}
    [host] = fleet["hosts"]
    assert set(host) == HOST_FIELDS
    assert host["id"] == gateway.state.host
    assert (host["proxy"], host["admin"]) == ("127.0.0.1:8080", "127.0.0.1:9180")
    assert host["version"] == cutover_version()
    assert host["local"] is True
    assert host["last_seen_ago"] < 1


def redis_gateway(
    tmp_path: Path, router: respx.MockRouter, url: str, host: str, port: int
) -> TestClient:
    directory = tmp_path / host
    directory.mkdir()
    path = directory / "cutover.yaml"
    write_config(
        path,
        listen={"host": "127.0.0.1", "port": port},
        admin={"host": "127.0.0.1", "port": port + 1},
        guard={"interval": 0.2},
        state={
            "backend": "redis", "url": url, "key_prefix": "cutover:fleet-test",
            "cache_path": str(directory / "cache.json"), "poll": 0.2, "lease": 2,
            "host_id": host,
        },
    )  # fmt: skip
    return TestClient(ByPort(make_gateway(path, router)))


def fleet_of(client: TestClient) -> dict:
    response = client.get(f"{ADMIN}/fleet", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_redis_fleet_lists_every_host_and_the_leader(
    tmp_path: Path,
    router: respx.MockRouter,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    with ExitStack() as stack:
        a = stack.enter_context(redis_gateway(tmp_path, router, redis_server.url, "host-a", 8080))
        b = stack.enter_context(redis_gateway(tmp_path, router, redis_server.url, "host-b", 8090))

        def both_and_a_leader() -> dict | None:
            fleet = fleet_of(a)
            ids = [host["id"] for host in fleet["hosts"]]
            return fleet if ids == ["host-a", "host-b"] and fleet["leader"] else None

        fleet = eventually(both_and_a_leader, "both hosts and a guard leader")
        assert fleet["backend"] == "redis"
        assert fleet["store"] == {"up": True, "url": redis_server.url}
        assert [h["admin"] for h in fleet["hosts"]] == ["127.0.0.1:8081", "127.0.0.1:8091"]
        assert [h["local"] for h in fleet["hosts"]] == [True, False]
        leader = fleet["leader"]
        gateways = {"host-a": a.app.gateway, "host-b": b.app.gateway}
        # The one the lease names is the one that believes it leads, with the same epoch.
        assert gateways[leader["host"]].coordination.epoch == leader["epoch"] >= 1
        assert fleet_of(b)["leader"] == leader  # every host sees the same

        b.__exit__(None, None, None)  # a clean stop leaves the list at once
        assert [host["id"] for host in fleet_of(a)["hosts"]] == ["host-a"]


def test_an_unreachable_store_answers_503_with_this_host(
    tmp_path: Path,
    router: respx.MockRouter,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    with redis_gateway(tmp_path, router, redis_server.url, "host-a", 8080) as a:
        eventually(lambda: fleet_of(a)["hosts"], "the first beat")
        redis_server.stop()
        body = problem(a.get(f"{ADMIN}/fleet", headers=AUTH), 503)
        assert body["type"] == "urn:cutover:problem:state-unavailable"
        assert body["detail"].startswith(f"the state store {redis_server.url} is unreachable")
        assert body["store"] == {"up": False, "url": redis_server.url}
        assert [host["id"] for host in body["hosts"]] == ["host-a"]
        assert body["leader"] is None
        # The migrations are still served from what this host holds.
        assert a.get(f"{ADMIN}/status", headers=AUTH).status_code == 200
        redis_server.start()
        eventually(lambda: a.get(f"{ADMIN}/fleet", headers=AUTH).status_code == 200, "Redis")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://ops@redis.internal:6380/2", "rediss://redis.internal:6380/2"),
        ("redis://user:secret@[::1]:6379", "redis://[::1]:6379"),
    ],
)
def test_the_store_s_url_is_shown_without_credentials(url: str, shown: str) -> None:
    assert public_url(url) == shown
