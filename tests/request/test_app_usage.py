"""Which requests the app counts for the usage report: those a migration with a deprecation
sends to its ``from`` by its weight; not an override, not what goes to ``to``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import respx
from starlette.testclient import TestClient

from tests.conftest import LEGACY_URL, NEW_URL

DEPRECATION = {"deprecated_at": "2026-01-01", "sunset_at": "2027-06-01"}


@pytest.fixture
def backends(upstreams: respx.MockRouter) -> respx.MockRouter:
    upstreams.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
    upstreams.route(url__startswith=NEW_URL).respond(200, text="new")
    return upstreams


def counted(client: TestClient) -> dict[str, int]:
    recorder = client.app.recorder  # type: ignore[attr-defined]
    return {row.client: row.count for row in recorder.drain()}


def test_requests_to_from_are_counted_by_client(
    proxy: Callable[..., TestClient], backends: respx.MockRouter
) -> None:
    client = proxy(deprecation=DEPRECATION, clients={"identify": "header:X-Client-Id"})
    client.get("/orders", headers={"X-Client-Id": "partner-a"})
    client.get("/orders/1", headers={"X-Client-Id": "partner-a"})
    client.get("/orders")
    assert counted(client) == {"partner-a": 2, "-": 1}


def test_an_override_or_to_is_not_counted(
    proxy: Callable[..., TestClient], backends: respx.MockRouter
) -> None:
    client = proxy(deprecation=DEPRECATION, split={"weight": 100})
    client.get("/orders")
    client.get("/orders", headers={"X-Cutover-Backend": "legacy"})  # a tester's override
    assert counted(client) == {}


def test_without_a_deprecation_nothing_is_counted(
    proxy: Callable[..., TestClient], backends: respx.MockRouter
) -> None:
    client = proxy()
    client.get("/orders")
    assert counted(client) == {}
