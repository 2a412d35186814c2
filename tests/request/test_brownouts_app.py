"""Brownouts and the sunset through the gateway, over respx backends, with an injected clock:
what is refused (410, 503 with Retry-After, problem+json, the deprecation headers), who
passes (exempt clients, dry runs, requests to ``to``, the override, a fallback), and the
three ``after_sunset`` modes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from cutover.ops.assembly import create_app
from cutover.request.clients import ClientId
from cutover.request.usage import UsageRecorder
from cutover.types import RawHeaders
from tests.clocks import Clock
from tests.conftest import LEGACY_URL, NEW_URL, make_settings

WINDOW_START = datetime(2027, 5, 3, 14, tzinfo=UTC).timestamp()
WINDOW_END = datetime(2027, 5, 4, 2, tzinfo=UTC).timestamp()
SUNSET = datetime(2027, 6, 1, tzinfo=UTC).timestamp()
DEPRECATION = {
    "deprecated_at": "2026-12-01",
    "sunset_at": "2027-06-01",
    "link": "https://example.com/migration-guide",
    "brownouts": [{"start": "2027-05-03T14:00:00Z", "duration": "12h"}],
}


class HeaderIdentifier:
    """Clients by their X-Client-Id (what ``clients.identify: header:X-Client-Id`` does)."""

    def identify(self, headers: RawHeaders, client: tuple[str, int] | None) -> ClientId:
        value = dict(headers).get(b"x-client-id")
        return ClientId(value.decode() if value else "-", None)


class Gateway:
    def __init__(self, client: TestClient, clock: Clock, recorder: UsageRecorder) -> None:
        self.client, self.clock, self.recorder = client, clock, recorder
        self.metrics = client.app.metrics  # type: ignore[attr-defined]

    def count(self, which: str, outcome: str) -> float:
        labels = {"migration": "default", "outcome": outcome}
        value = self.metrics.registry.get_sample_value(f"cutover_{which}_requests_total", labels)
        return value or 0.0


@pytest.fixture
def backends() -> Iterator[tuple[respx.Route, respx.Route, respx.MockRouter]]:
    with respx.MockRouter(assert_all_mocked=True, assert_all_called=False) as router:
        legacy = router.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
        new = router.route(url__startswith=NEW_URL).respond(200, text="new")
        yield legacy, new, router


@pytest.fixture
def gateway(backends: Any) -> Iterator[Callable[..., Gateway]]:
    clients: list[TestClient] = []

    def build(now: float = WINDOW_START, weight: float = 0, **deprecation: Any) -> Gateway:
        clock, recorder = Clock(now), UsageRecorder()
        section = {**DEPRECATION, **deprecation}
        settings = make_settings(split={"weight": weight}, deprecation=section)
        app = create_app(settings, transport=httpx.MockTransport(backends[2].async_handler),
                         recorder=recorder, identifier=HeaderIdentifier(),  # type: ignore[arg-type]
                         clock=clock)  # fmt: skip
        client = TestClient(app, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        return Gateway(client, clock, recorder)

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def test_a_brownout_refuses_from_with_410_and_a_problem(gateway, backends) -> None:
    legacy, _, _ = backends
    gw = gateway()
    response = gw.client.get("/api/orders", headers={"X-Client-Id": "acme"})
    assert response.status_code == 410
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "urn:cutover:problem:brownout",
        "title": "Gone",
        "status": 410,
        "detail": "This API is in a scheduled brownout until 2027-05-04T02:00:00Z; it will be "
        "removed on 2027-06-01T00:00:00Z; see https://example.com/migration-guide.",
        "sunset": "2027-06-01T00:00:00Z",
        "link": "https://example.com/migration-guide",
        "window_end": "2027-05-04T02:00:00Z",
    }
    assert response.headers["deprecation"] == "@1796083200"
    assert response.headers["sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"
    assert 'rel="deprecation"' in response.headers["link"]
    assert "retry-after" not in response.headers
    assert legacy.call_count == 0
    assert gw.count("brownout", "refused") == 1
    [row] = gw.recorder.drain()
    assert (row.client, row.method, row.prefix, row.count, row.brownouts) == (
        "acme",
        "GET",
        "/",
        1,
        1,
    )


def test_a_503_brownout_says_when_to_retry(gateway) -> None:
    gw = gateway(brownout_status=503)
    response = gw.client.post("/api/orders", content=b"{}")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "Tue, 04 May 2027 02:00:00 GMT"
    assert response.json()["title"] == "Service Unavailable"


def test_before_and_after_the_window_from_serves(gateway, backends) -> None:
    legacy, _, _ = backends
    gw = gateway(now=WINDOW_START - 1)
    assert gw.client.get("/api/orders").text == "legacy"
    gw.clock.now = WINDOW_START
    assert gw.client.get("/api/orders").status_code == 410
    gw.clock.now = WINDOW_END - 0.5
    assert gw.client.get("/api/orders").status_code == 410
    gw.clock.now = WINDOW_END
    response = gw.client.get("/api/orders")
    assert response.text == "legacy" and response.headers["deprecation"] == "@1796083200"
    assert legacy.call_count == 2
    rows = gw.recorder.drain()  # one client and endpoint; the window spans two UTC days
    assert (sum(row.count for row in rows), sum(row.brownouts for row in rows)) == (4, 2)


def test_requests_to_to_are_untouched(gateway, backends) -> None:
    legacy, new, _ = backends
    gw = gateway(weight=100)
    response = gw.client.get("/api/orders")
    assert (response.status_code, response.text) == (200, "new")
    assert "deprecation" not in response.headers
    assert gw.recorder.drain() == []  # not a call to the old API
    assert gw.count("brownout", "refused") == 0
    assert (legacy.call_count, new.call_count) == (0, 1)


def test_the_override_header_and_a_fallback_to_from_pass(gateway, backends) -> None:
    _, new, _ = backends
    gw = gateway()
    assert gw.client.get("/api/x", headers={"X-Cutover-Backend": "legacy"}).text == "legacy"
    new.respond(502)
    gw100 = gateway(weight=100)
    response = gw100.client.get("/api/x")  # new fails, the fallback serves it from legacy
    assert (response.status_code, response.text) == (200, "legacy")


def test_exempt_clients_pass(gateway, backends) -> None:
    gw = gateway(exempt_clients=["partner-42"])
    assert gw.client.get("/api/x", headers={"X-Client-Id": "partner-42"}).text == "legacy"
    assert gw.client.get("/api/x", headers={"X-Client-Id": "acme"}).status_code == 410
    assert (gw.count("brownout", "exempt"), gw.count("brownout", "refused")) == (1, 1)
    rows = gw.recorder.drain()
    assert {(row.client, row.count, row.brownouts) for row in rows} == {
        ("partner-42", 1, 0),
        ("acme", 1, 1),
    }


def test_a_dry_run_refuses_no_one_but_counts_and_logs(gateway, caplog) -> None:
    caplog.set_level(logging.WARNING, "cutover.deprecation")
    gw = gateway(dry_run=True)
    for _ in range(3):
        assert gw.client.get("/api/x").text == "legacy"
    assert gw.count("brownout", "dry_run") == 3 and gw.count("brownout", "refused") == 0
    assert [(row.count, row.brownouts) for row in gw.recorder.drain()] == [(3, 3)]
    [line] = [r.getMessage() for r in caplog.records if r.name == "cutover.deprecation"]
    assert line.startswith("dry run: default is in a brownout until 2027-05-04T02:00:00Z")


def test_after_sunset_gone_answers_410_sunset(gateway, backends) -> None:
    legacy, _, _ = backends
    gw = gateway(now=SUNSET, after_sunset="gone")
    response = gw.client.get("/api/x")
    assert response.status_code == 410
    body = response.json()
    assert body["type"] == "urn:cutover:problem:sunset" and body["sunset"] == "2027-06-01T00:00:00Z"
    assert response.headers["sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"
    assert legacy.call_count == 0 and gw.count("sunset", "gone") == 1
    gw.clock.now = SUNSET - 1  # the day before: served
    assert gw.client.get("/api/x").text == "legacy"


def test_after_sunset_route_to_new_sends_from_to_to(gateway, backends) -> None:
    legacy, new, _ = backends
    gw = gateway(now=SUNSET + 86400, after_sunset="route_to_new")
    response = gw.client.get("/api/x")
    assert (response.text, response.headers["x-cutover-backend"]) == ("new", "new")
    assert (legacy.call_count, new.call_count) == (0, 1)
    assert gw.count("sunset", "routed_to_new") == 1


def test_after_sunset_keep_serves_and_warns_at_start_and_once_a_day(gateway, caplog) -> None:
    caplog.set_level(logging.WARNING, "cutover.deprecation")

    def warnings() -> int:
        return sum("past its sunset" in r.getMessage() for r in caplog.records)

    gw = gateway(now=SUNSET + 10)
    assert warnings() == 1  # at start
    assert gw.client.get("/api/x").text == "legacy"
    gw.clock.now += 86400 - 20
    assert gw.client.get("/api/x").text == "legacy"
    assert warnings() == 1
    gw.clock.now += 20
    gw.client.get("/api/x")
    gw.client.get("/api/x")
    assert warnings() == 2 and gw.count("sunset", "served") == 4
