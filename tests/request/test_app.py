"""The gateway over respx-mocked backends: split, stickiness, headers, errors."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pytest
import respx

from cutover.request.app import refuse, run_lifespan
from tests.conftest import LEGACY_URL, NEW_URL
from tests.request import V3_URL, two_migrations

DEPRECATION = {
    "deprecated_at": "2026-12-01T00:00:00Z",
    "sunset_at": "2027-06-01T00:00:00Z",
    "link": "https://example.com/guide",
    "legacy_headers": True,
}


def both(upstreams: respx.MockRouter, path: str = "/api/x", **response) -> tuple:
    legacy = upstreams.route(url__startswith=LEGACY_URL + path).respond(
        200, text="legacy", **response
    )
    new = upstreams.route(url__startswith=NEW_URL + path).respond(200, text="new", **response)
    return legacy, new


def test_weight_zero_and_hundred(upstreams, proxy) -> None:
    legacy, new = both(upstreams)
    client = proxy(split={"weight": 0})
    assert {client.get("/api/x").headers["x-cutover-backend"] for _ in range(30)} == {"legacy"}
    assert (legacy.call_count, new.call_count) == (30, 0)
    client = proxy(split={"weight": 100})
    response = client.get("/api/x")
    assert (response.text, response.headers["x-cutover-backend"]) == ("new", "new")


def test_split_share_and_stickiness(upstreams, proxy) -> None:
    both(upstreams)
    client = proxy(split={"weight": 50, "sticky": "header:X-User-Id"})
    sides = {}
    for i in range(300):
        sides[i] = client.get("/api/x", headers={"X-User-Id": f"u{i}"}).headers["x-cutover-backend"]
    share = sum(side == "new" for side in sides.values()) / len(sides)
    assert 0.35 < share < 0.65
    for i in range(0, 300, 15):
        again = client.get("/api/x", headers={"X-User-Id": f"u{i}"})
        assert again.headers["x-cutover-backend"] == sides[i]


def test_override_header_and_route_pin(upstreams, proxy) -> None:
    both(upstreams)
    both(upstreams, "/api/v2/")
    client = proxy(split={"weight": 0}, routes=[{"prefix": "/api/v2/", "backend": "new"}])
    assert client.get("/api/x", headers={"X-Cutover-Backend": "new"}).text == "new"
    assert client.get("/api/x", headers={"X-Cutover-Backend": "bogus"}).text == "legacy"
    assert client.get("/api/v2/y").text == "new"
    assert client.get("/api/v2/y", headers={"X-Cutover-Backend": "legacy"}).text == "legacy"


def test_path_query_method_and_body_reach_the_backend(upstreams, proxy) -> None:
    route = upstreams.post(url__startswith=NEW_URL).respond(201, json={"ok": True})
    client = proxy(split={"weight": 100})
    response = client.post(
        "/api/items?b=2&a=1&a=3", content=b'{"n": 1}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201
    sent = route.calls.last.request
    assert sent.method == "POST"
    assert sent.url.raw_path == b"/api/items?b=2&a=1&a=3"
    assert sent.content == b'{"n": 1}'
    assert sent.headers["content-type"] == "application/json"


def test_large_body_is_streamed_upstream(upstreams, proxy) -> None:
    route = upstreams.put(url__startswith=LEGACY_URL).respond(204)
    client = proxy()
    payload = b"x" * (1024 * 1024 + 7)
    response = client.put("/upload", content=iter([payload[:500_000], payload[500_000:]]))
    assert response.status_code == 204
    assert route.calls.last.request.content == payload


def test_request_header_hygiene(upstreams, proxy) -> None:
    route = upstreams.get(url__startswith=LEGACY_URL).respond(200)
    client = proxy()
    client.get(
        "/h",
        headers={
            "Connection": "keep-alive, X-Private",
            "X-Private": "1",
            "Keep-Alive": "timeout=3",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Forwarded-For": "203.0.113.9",
            "Authorization": "Bearer end-to-end",
            "Host": "shop.example",
        },
    )
    sent = route.calls.last.request.headers
    for hop in ("x-private", "keep-alive", "te", "proxy-authorization"):
        assert hop not in sent
    assert sent.get("connection") in (None, "keep-alive")  # the client library may add its own
    assert sent["authorization"] == "Bearer end-to-end"
    assert sent["x-forwarded-for"] == "203.0.113.9, testclient"
    assert sent["x-forwarded-host"] == "shop.example"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["via"] == "1.1 cutover"
    assert sent["host"] == "legacy.test"


def test_response_header_hygiene_and_pass_through(upstreams, proxy) -> None:
    upstreams.get(url__startswith=LEGACY_URL).mock(
        return_value=httpx.Response(
            200,
            headers=[
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; Path=/"),
                ("Connection", "X-Hop"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("X-App", "kept"),
            ],
            content=b"ok",
        )
    )
    response = proxy().get("/h")
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert "x-hop" not in response.headers
    assert "keep-alive" not in response.headers
    assert response.headers["x-app"] == "kept"
    assert response.headers["via"] == "1.1 cutover"


def test_compressed_bodies_are_not_decoded(upstreams, proxy) -> None:
    compressed = gzip.compress(b"hello " * 1000)
    upstreams.get(url__startswith=LEGACY_URL).respond(
        200, content=compressed, headers={"Content-Encoding": "gzip"}
    )
    with proxy().stream("GET", "/z", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert raw == compressed


def test_redirects_are_returned_not_followed(upstreams, proxy) -> None:
    upstreams.get(LEGACY_URL + "/old").respond(302, headers={"Location": "/elsewhere"})
    response = proxy().get("/old")
    assert response.status_code == 302
    assert response.headers["location"] == "/elsewhere"


@pytest.mark.parametrize("status", [204, 304, 404, 418, 500, 503])
def test_status_codes_pass_through(upstreams, proxy, status: int) -> None:
    upstreams.get(url__startswith=LEGACY_URL).respond(status)
    response = proxy().get("/s")
    assert response.status_code == status
    if status in (204, 304):
        assert response.content == b""


def test_head(upstreams, proxy) -> None:
    upstreams.head(url__startswith=LEGACY_URL).respond(200, headers={"Content-Length": "1234"})
    response = proxy().head("/file")
    assert response.status_code == 200
    assert response.headers["content-length"] == "1234"
    assert response.content == b""


def test_deprecation_headers_only_on_legacy(upstreams, proxy) -> None:
    both(upstreams)
    both(upstreams, "/health")
    client = proxy(deprecation=DEPRECATION, routes=[{"prefix": "/health", "deprecation": False}])
    legacy = client.get("/api/x", headers={"X-Cutover-Backend": "legacy"})
    assert legacy.headers["deprecation"] == "@1796083200"
    assert legacy.headers["sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"
    assert legacy.headers.get_list("link") == [
        '<https://example.com/guide>; rel="deprecation"',
        '<https://example.com/guide>; rel="sunset"',
    ]
    assert legacy.headers["x-api-sunset"] == "2027-06-01"
    assert "2027-06-01" in legacy.headers["x-api-deprecation"]
    new = client.get("/api/x", headers={"X-Cutover-Backend": "new"})
    assert not {"deprecation", "sunset", "link", "x-api-sunset"} & set(new.headers)
    assert "deprecation" not in client.get("/health").headers


def test_deprecation_link_is_appended_to_upstream_links(upstreams, proxy) -> None:
    upstreams.get(url__startswith=LEGACY_URL).respond(200, headers={"Link": '</next>; rel="next"'})
    response = proxy(deprecation=DEPRECATION).get("/p")
    links = response.headers.get_list("link")
    assert links[0] == '</next>; rel="next"'
    assert '<https://example.com/guide>; rel="deprecation"' in links


def test_sticky_cookie_is_assigned_and_honoured(upstreams, proxy) -> None:
    both(upstreams)
    client = proxy(split={"weight": 50, "sticky": "cookie:cutover_id"})
    first = client.get("/api/x")
    set_cookie = first.headers["set-cookie"]
    assert set_cookie.startswith("cutover_id=")
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/" in set_cookie
    # TestClient keeps cookies: later requests send the assigned id back.
    for _ in range(10):
        again = client.get("/api/x")
        assert "set-cookie" not in again.headers
        assert again.headers["x-cutover-backend"] == first.headers["x-cutover-backend"]


def test_upstream_cookies_are_never_replayed(upstreams, proxy) -> None:
    route = upstreams.get(url__startswith=LEGACY_URL)
    route.side_effect = [
        httpx.Response(200, headers={"Set-Cookie": "session=alice; Path=/"}),
        httpx.Response(200),
    ]
    client = proxy()
    client.get("/login")
    client.cookies.clear()
    client.get("/whoami")
    assert "cookie" not in route.calls.last.request.headers


def problem(response: httpx.Response) -> dict:
    assert response.headers["content-type"] == "application/problem+json"
    body = json.loads(response.content)
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == response.status_code
    return body


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (httpx.ConnectError("refused"), 502, "connect"),
        (httpx.ReadError("reset by peer"), 502, "reset"),
        (httpx.RemoteProtocolError("garbage"), 502, "protocol"),
        (httpx.ConnectTimeout("slow connect"), 504, "timeout"),
        (httpx.ReadTimeout("slow read"), 504, "timeout"),
    ],
)
def test_upstream_failures_become_problem_responses(upstreams, proxy, error, status, kind) -> None:
    upstreams.get(url__startswith=NEW_URL).mock(side_effect=error)
    response = proxy(split={"weight": 100}, fallback={"enabled": False}).get("/api/x")
    assert response.status_code == status
    body = problem(response)
    assert body["backend"] == "new"
    assert body["type"].endswith(kind)
    assert "new" in body["detail"]
    assert response.headers["x-cutover-backend"] == "new"


def test_malformed_content_length_is_a_400(proxy) -> None:
    client = proxy()
    response = client.post("/x", content=b"abc", headers={"Content-Length": "3, 3"})
    assert response.status_code == 400
    problem(response)


@pytest.mark.parametrize(
    ("scope", "refusal"),
    [
        ({"method": "GET", "path": "/x"}, None),
        ({"method": "GET", "path": "/x", "http_version": "1.0"}, None),
        ({"method": "CONNECT", "path": "/x"}, 405),
        ({"method": "TRACE", "path": "/x"}, 405),
        ({"method": "GET", "path": "/x", "http_version": "2"}, 400),
        ({"method": "GET", "path": "x", "raw_path": b"http://other/x"}, 400),
    ],
)
def test_refuse(scope: dict, refusal: int | None) -> None:
    got = refuse(scope)
    assert (got if got is None else got[0]) == refusal


def test_a_websocket_scope_without_the_handover_is_refused(proxy) -> None:
    """Only Cutover's own protocol hands a handshake's connection over (ws_handoff); from
    any other server the app refuses it (403) rather than speak WebSocket itself."""
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as refused, proxy().websocket_connect("/ws"):
        pass
    assert refused.value.code == 1008


def lifespan(*messages: str, fail: bool = False) -> tuple[list[str], list[dict]]:
    incoming = [{"type": f"lifespan.{message}"} for message in messages]
    ran: list[str] = []
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    async def startup() -> None:
        ran.append("startup")
        if fail:
            raise RuntimeError("no port")

    async def shutdown() -> None:
        ran.append("shutdown")

    asyncio.run(run_lifespan(receive, send, startup, shutdown))
    return ran, sent


def test_lifespan_runs_startup_then_shutdown() -> None:
    ran, sent = lifespan("startup", "shutdown")
    assert ran == ["startup", "shutdown"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_failed_startup_is_reported_and_ends_the_lifespan() -> None:
    ran, sent = lifespan("startup", fail=True)
    assert ran == ["startup"]
    assert sent == [{"type": "lifespan.startup.failed", "message": "no port"}]


# Two migrations over three backends (tests.request.two_migrations): engine legacy -> new,
# strategies new -> v3.

ENGINE_PATH, STRATEGIES_PATH = "/api/v1/backtests/7", "/api/v1/strategies/3"
DEPRECATION_HEADERS = {"deprecation", "sunset", "link", "x-api-deprecation", "x-api-sunset"}


def three(upstreams: respx.MockRouter) -> None:
    for name, url in (("legacy", LEGACY_URL), ("new", NEW_URL), ("v3", V3_URL)):
        upstreams.route(url__startswith=url).respond(200, text=name)


def test_each_migrations_answers_from_its_from_carry_its_own_deprecation(upstreams, proxy) -> None:
    three(upstreams)
    client = proxy(**two_migrations(engine=0, strategies=0))
    engine = client.get(ENGINE_PATH)
    assert engine.text == "legacy"
    assert engine.headers["deprecation"] == "@1796083200"  # 2026-12-01
    assert engine.headers["sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"
    assert engine.headers.get_list("link") == [
        '<https://example.com/engine>; rel="deprecation"',
        '<https://example.com/engine>; rel="sunset"',
    ]
    strategies = client.get(STRATEGIES_PATH)
    assert strategies.text == "new"  # strategies' from
    assert strategies.headers["deprecation"] == "@1798761600"  # 2027-01-01
    assert strategies.headers.get_list("link") == [
        '<https://example.com/strategies>; rel="deprecation"'
    ]
    assert "sunset" not in strategies.headers  # engine's sunset is engine's only
    # new is engine's to: its answers there carry nothing; legacy is not strategies' from.
    for path, backend in [(ENGINE_PATH, "new"), (STRATEGIES_PATH, "v3"),
                          (STRATEGIES_PATH, "legacy"), ("/health", "legacy")]:  # fmt: skip
        response = client.get(path, headers={"X-Cutover-Backend": backend})
        assert response.text == backend
        assert not DEPRECATION_HEADERS & set(response.headers), (path, backend)
    # Outside every migration (default_backend): no migration deprecates it.
    outside = client.get("/health")
    assert outside.text == "legacy" and "deprecation" not in outside.headers


def test_requests_are_counted_by_migration(upstreams, proxy) -> None:
    three(upstreams)
    client = proxy(
        **two_migrations(engine=100, strategies=0),
        routes=[{"prefix": "/api/v1/backtests/pinned", "backend": "legacy"}],
    )
    for path in (ENGINE_PATH, ENGINE_PATH, STRATEGIES_PATH, "/health",
                 "/api/v1/backtests/pinned/1"):  # fmt: skip
        assert client.get(path).status_code == 200
    registry = client.app.metrics.registry

    def counted(migration: str, backend: str, route: str = "default") -> float | None:
        labels = {"migration": migration, "backend": backend, "route": route, "code": "2xx",
                  "cohort": "weight"}  # fmt: skip
        return registry.get_sample_value("cutover_requests_total", labels)

    assert counted("engine", "new") == 2
    assert counted("strategies", "new") == 1
    assert counted("none", "legacy") == 1  # /health: under no migration
    assert counted("none", "legacy", "/api/v1/backtests/pinned") == 1  # a pin: not the rollout's
    assert counted("engine", "legacy") is None
    duration = {"migration": "strategies", "backend": "new", "route": "default"}
    assert registry.get_sample_value("cutover_request_duration_seconds_count", duration) == 1
