"""The usage report in one gateway (respx backends): requests a migration with a deprecation
sends to its ``from`` are counted per client, flushed to SQLite, and served by
``GET /migrations/{name}/usage`` and ``GET /usage`` in JSON, CSV and table form."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import respx
from starlette.testclient import TestClient

from cutover.ops.gateway import Gateway
from tests.migrations import STRATEGIES, TRADE_ENGINE
from tests.ops.conftest import ADMIN, AUTH, PROXY, TOKEN, ByPort, make_gateway, write_migrations
from tests.processes import wait_until

DEPRECATION = {"deprecated_at": "2026-01-01", "sunset_at": "2027-06-01"}
STRATEGIES_PATH = "/api/v1/strategies"


@pytest.fixture
def usage_gateway(tmp_path: Path, router: respx.MockRouter, monkeypatch) -> Gateway:
    """strategies (weight 0: all to legacy) with a deprecation, trade-engine without."""
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    path = tmp_path / "cutover.yaml"
    strategies = {**STRATEGIES, "rollout": None, "deprecation": DEPRECATION}
    write_migrations(path, TRADE_ENGINE, strategies, clients={"identify": "header:X-Client-Id"})
    return make_gateway(path, router)


@pytest.fixture
def client(usage_gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(ByPort(usage_gateway)) as client:
        yield client


def call(client: TestClient, who: str | None, path: str = STRATEGIES_PATH, **options) -> None:
    headers = {"User-Agent": "sdk/1.0"} | ({"X-Client-Id": who} if who else {})
    response = client.request(options.pop("method", "GET"), PROXY + path, headers=headers)
    assert response.status_code == 200


def report(client: TestClient, path: str = "/migrations/strategies/usage", **query) -> dict:
    response = client.get(ADMIN + path, headers=AUTH, params=query)
    assert response.status_code == 200, response.text
    return response.json()


async def flushed(gateway: Gateway) -> None:
    assert gateway.usage.flusher is not None
    assert await gateway.usage.flusher.flush()


def test_calls_to_from_are_counted_per_client(client: TestClient, usage_gateway: Gateway) -> None:
    for who in ["partner-a", "partner-a", "partner-b", None]:
        call(client, who)
    call(client, "partner-a", f"{STRATEGIES_PATH}/7", method="DELETE")
    call(client, "partner-a", "/api/v1/backtests/1/execute", method="POST")  # no deprecation
    client.portal.call(flushed, usage_gateway)  # type: ignore[union-attr]

    document = report(client)
    calls = {c["client"]: c["calls"] for c in document["clients"]}
    assert calls == {"partner-a": 3, "partner-b": 1, "-": 1}
    first = document["clients"][0]
    assert first["endpoints"] == [f"DELETE {STRATEGIES_PATH}", f"GET {STRATEGIES_PATH}"]
    assert first["user_agent"] == "sdk/1.0"
    assert report(client, "/usage")["clients"] == document["clients"]
    metric = usage_gateway.metrics.registry.get_sample_value(
        "cutover_deprecated_requests_total", {"migration": "strategies"}
    )
    assert metric == 5


def test_the_report_in_csv_and_table(client: TestClient, usage_gateway: Gateway) -> None:
    call(client, "partner-a")
    client.portal.call(flushed, usage_gateway)  # type: ignore[union-attr]
    response = client.get(ADMIN + "/migrations/strategies/usage?format=csv", headers=AUTH)
    assert response.headers["content-type"].startswith("text/csv")
    (only,) = csv.DictReader(io.StringIO(response.text))
    assert (only["client"], only["calls"]) == ("partner-a", "1")
    table = client.get(ADMIN + "/usage?format=table&since=1h", headers=AUTH).text
    assert table.splitlines()[1].split()[:3] == ["strategies", "partner-a", "1"]


@pytest.mark.parametrize(
    ("path", "status", "slug"),
    [
        ("/migrations/nope/usage", 404, "not-found"),
        ("/migrations/trade-engine/usage", 409, "no-deprecation"),
        ("/migrations/strategies/usage?since=soon", 422, "invalid-query"),
        ("/usage?format=xml", 422, "invalid-query"),
    ],
)
def test_refusals(client: TestClient, path: str, status: int, slug: str) -> None:
    response = client.get(ADMIN + path, headers=AUTH)
    assert response.status_code == status
    assert response.json()["type"].endswith(slug)


def test_the_report_needs_the_token(client: TestClient) -> None:
    assert client.get(ADMIN + "/usage").status_code == 401


def test_without_a_deprecation_no_database_is_created(
    tmp_path: Path, router: respx.MockRouter, monkeypatch
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    path = tmp_path / "cutover.yaml"
    write_migrations(path)
    with TestClient(ByPort(make_gateway(path, router))) as client:
        call(client, "partner-a")
    assert not (tmp_path / "usage.sqlite3").exists()


def test_the_status_counts_the_clients_of_the_week(
    client: TestClient, usage_gateway: Gateway
) -> None:
    for who in ["partner-a", "partner-b", "partner-a"]:
        call(client, who)
    client.portal.call(flushed, usage_gateway)  # type: ignore[union-attr]

    def clients_7d() -> int | None:
        response = client.get(ADMIN + "/migrations/strategies", headers=AUTH)
        return response.json()["deprecation"]["clients_7d"]

    # Counted off the loop once the flusher has written: within a second or so.
    assert wait_until(lambda: clients_7d() == 2, 10.0, "clients_7d == 2")
    trade_engine = client.get(ADMIN + "/migrations/trade-engine", headers=AUTH).json()
    assert trade_engine["deprecation"] is None  # no deprecation: nothing counted
