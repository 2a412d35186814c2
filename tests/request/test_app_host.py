"""Host, redirects and the client's address through the whole app over respx-mocked
backends: preserve_host, rewrite_location, listen.trusted_proxies and forwarded.header."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from cutover.ops.assembly import create_app
from tests.conftest import LEGACY_URL, NEW_URL, make_settings

LB = ("10.0.0.1", 40000)  # the trusted load balancer in front
OUTSIDE = ("198.51.100.50", 40000)  # a client talking to Cutover directly
TRUSTED = {"listen": {"trusted_proxies": ["10.0.0.0/8"]}}
DEPRECATION = {"deprecated_at": "2026-01-01", "sunset_at": "2027-06-01"}


@pytest.fixture
def gateway(upstreams: respx.MockRouter) -> Iterator[Callable[..., TestClient]]:
    """``gateway(peer, base_url=..., **sections)``: the app seen from the TCP peer ``peer``."""
    clients: list[TestClient] = []

    def build(peer=LB, base_url: str = "http://gw.example", **sections: Any) -> TestClient:
        app = create_app(
            make_settings(**sections), transport=httpx.MockTransport(upstreams.async_handler)
        )
        client = TestClient(app, base_url=base_url, follow_redirects=False, client=peer)
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def both(upstreams: respx.MockRouter) -> tuple[respx.Route, respx.Route]:
    legacy = upstreams.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
    new = upstreams.route(url__startswith=NEW_URL).respond(200, text="new")
    return legacy, new


def test_preserve_host_sends_the_clients_host_to_that_backend_only(gateway, both) -> None:
    legacy, new = both
    client = gateway(backends={"legacy": {"preserve_host": True}})
    client.get("/x", headers={"Host": "shop.example:8443"})
    assert legacy.calls.last.request.headers["host"] == "shop.example:8443"
    client.get("/x", headers={"Host": "shop.example:8443", "X-Cutover-Backend": "new"})
    assert new.calls.last.request.headers["host"] == "new.test"
    assert new.calls.last.request.headers["x-forwarded-host"] == "shop.example:8443"


def test_a_fallback_gets_its_own_host_rule(gateway, upstreams) -> None:
    upstreams.route(url__startswith=NEW_URL).respond(503)
    legacy = upstreams.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
    client = gateway(split={"weight": 100}, backends={"new": {"preserve_host": True}})
    response = client.get("/x", headers={"Host": "shop.example"})
    assert response.headers["x-cutover-fallback"] == "new-failed"
    assert legacy.calls.last.request.headers["host"] == "legacy.test"


def test_a_redirect_to_the_backend_comes_back_on_the_clients_origin(gateway, upstreams) -> None:
    upstreams.get(LEGACY_URL + "/old").respond(
        302, headers={"Location": LEGACY_URL + "/new?a=1", "Content-Location": LEGACY_URL + "/d"}
    )
    upstreams.get(LEGACY_URL + "/away").respond(302, headers={"Location": NEW_URL + "/x"})
    upstreams.get(LEGACY_URL + "/rel").respond(302, headers={"Location": "/elsewhere"})
    client = gateway(base_url="https://gw.example:8443")
    response = client.get("/old")
    assert response.headers["location"] == "https://gw.example:8443/new?a=1"
    assert response.headers["content-location"] == "https://gw.example:8443/d"
    assert client.get("/away").headers["location"] == NEW_URL + "/x"  # another origin
    assert client.get("/rel").headers["location"] == "/elsewhere"


def test_rewrite_location_off_leaves_the_backends_url(gateway, upstreams) -> None:
    upstreams.get(LEGACY_URL + "/old").respond(302, headers={"Location": LEGACY_URL + "/new"})
    client = gateway(backends={"legacy": {"rewrite_location": False}})
    assert client.get("/old").headers["location"] == LEGACY_URL + "/new"


def test_a_base_path_is_taken_off_as_it_was_added(gateway, upstreams) -> None:
    upstreams.get("http://legacy.test/v1/orders").respond(
        201, headers={"Location": "http://legacy.test/v1/orders/7"}
    )
    client = gateway(backends={"legacy": {"url": "http://legacy.test/v1"}})
    assert client.get("/orders").headers["location"] == "http://gw.example/orders/7"


def test_the_forwarded_client_is_what_a_network_cohort_sees(gateway, both) -> None:
    engine = {"name": "engine", "match": {"prefix": "/"}, "from": "legacy", "to": "new",
              "cohorts": [{"network": ["203.0.113.0/24"], "backend": "new"}]}  # fmt: skip
    behind = gateway(LB, migrations=[engine], **TRUSTED)
    direct = gateway(OUTSIDE, migrations=[engine], **TRUSTED)
    spoof = {"X-Forwarded-For": "203.0.113.9"}
    assert behind.get("/x", headers=spoof).text == "new"
    assert behind.get("/x", headers={"X-Forwarded-For": "198.51.100.1"}).text == "legacy"
    assert direct.get("/x", headers=spoof).text == "legacy"  # never believed from outside
    legacy, new = both
    assert new.calls.last.request.headers["x-forwarded-for"] == "203.0.113.9, 10.0.0.1"
    assert legacy.calls.last.request.headers["x-forwarded-for"] == "203.0.113.9, 198.51.100.50"


def test_client_ip_stickiness_buckets_the_forwarded_client(gateway, both) -> None:
    split = {"weight": 50, "sticky": "client_ip"}
    behind = gateway(LB, split=split, **TRUSTED)
    seen = {behind.get("/x", headers={"X-Forwarded-For": f"203.0.113.{i}"}).text
            for i in range(1, 41)}  # fmt: skip
    assert seen == {"legacy", "new"}  # by each client, not all by the balancer's address
    again = {behind.get("/x", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"}).text
             for _ in range(10)}  # fmt: skip
    assert len(again) == 1
    direct = gateway(OUTSIDE, split=split, **TRUSTED)
    spoofed = {direct.get("/x", headers={"X-Forwarded-For": f"203.0.113.{i}"}).text
               for i in range(1, 41)}  # fmt: skip
    assert len(spoofed) == 1  # the peer itself, whatever it claims


def test_the_override_restriction_reads_the_forwarded_client(gateway, both) -> None:
    split = {"override_allowed_from": ["192.0.2.0/24"]}
    override = {"X-Cutover-Backend": "new"}
    behind = gateway(LB, split=split, **TRUSTED)
    assert behind.get("/x", headers={**override, "X-Forwarded-For": "192.0.2.5"}).text == "new"
    assert behind.get("/x", headers={**override, "X-Forwarded-For": "6.6.6.6"}).text == "legacy"
    direct = gateway(("203.0.113.1", 1), split=split, **TRUSTED)
    assert direct.get("/x", headers={**override, "X-Forwarded-For": "192.0.2.5"}).text == ("legacy")


def test_usage_is_counted_by_the_forwarded_client(gateway, both) -> None:
    client = gateway(LB, deprecation=DEPRECATION, **TRUSTED)
    client.get("/orders", headers={"X-Forwarded-For": "203.0.113.9"})
    client.get("/orders", headers={"X-Forwarded-For": "garbage, 203.0.113.9"})
    client.get("/orders")  # the balancer's own request: itself
    rows = {row.client: row.count for row in client.app.recorder.drain()}  # type: ignore[attr-defined]
    assert rows == {"203.0.113.9": 2, "10.0.0.1": 1}


def test_without_trusted_proxies_the_peer_is_the_client(gateway, both) -> None:
    client = gateway(LB, deprecation=DEPRECATION)
    client.get("/orders", headers={"X-Forwarded-For": "203.0.113.9"})
    rows = {row.client: row.count for row in client.app.recorder.drain()}  # type: ignore[attr-defined]
    assert rows == {"10.0.0.1": 1}


def test_rfc7239_through_a_trusted_proxy(gateway, both) -> None:
    legacy, _ = both
    client = gateway(LB, forwarded={"header": "rfc7239"}, **TRUSTED)
    client.get("/x", headers={"Forwarded": 'for="[2001:db8::9]";proto=https',
                              "X-Forwarded-For": "6.6.6.6"})  # fmt: skip
    sent = legacy.calls.last.request.headers
    assert (
        sent["forwarded"]
        == 'for="[2001:db8::9]";proto=https, for=10.0.0.1;proto=http;host=gw.example'
    )
    assert "x-forwarded-for" not in sent
    direct = gateway(OUTSIDE, forwarded={"header": "both"}, **TRUSTED)
    direct.get("/x", headers={"Forwarded": "for=6.6.6.6", "X-Forwarded-Proto": "https"})
    sent = legacy.calls.last.request.headers
    assert sent["forwarded"] == "for=198.51.100.50;proto=http;host=gw.example"
    assert sent["x-forwarded-proto"] == "http"
