"""The console on the admin listener, in process (a gateway of two migrations over respx):
sign-in and its cookie, the roles, CSRF, actions recorded with the role, the JSON API's
bearer check unchanged, and the live stream."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator

import pytest
import respx
from starlette.testclient import TestClient

from cutover.console.sessions import COOKIE
from cutover.ops.gateway import Gateway
from tests.ops.conftest import ADMIN, AUTH, TOKEN, ByPort, make_gateway

VIEW_TOKEN = "v1ew-only-token"
TRADE = "trade-engine"


@pytest.fixture
def gateway(migrations_path, router: respx.MockRouter, monkeypatch) -> Gateway:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("CUTOVER_VIEW_TOKEN", VIEW_TOKEN)
    return make_gateway(migrations_path, router)


@pytest.fixture
def waits(gateway: Gateway) -> list[float]:
    """The sign-in throttle's waits, recorded instead of slept."""
    recorded: list[float] = []

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    assert gateway.console is not None
    gateway.console.throttle.sleep = sleep
    return recorded


@pytest.fixture
def client(gateway: Gateway, waits: list[float]) -> Iterator[TestClient]:
    with TestClient(ByPort(gateway), base_url=ADMIN, follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, token: str) -> str:
    response = client.post("/console/signin", data={"token": token})
    assert response.status_code == 303, response.text
    return response.headers["set-cookie"]


def csrf_of(client: TestClient, name: str = TRADE) -> str:
    page = client.get(f"/console/m/{name}")
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, "no action form on the page"
    return match.group(1)


def test_the_pages_need_a_sign_in_and_the_admin_token_gives_one(client: TestClient) -> None:
    response = client.get("/")
    assert (response.status_code, response.headers["location"]) == (303, "/console/signin")
    assert 'name="token"' in client.get("/console/signin").text
    cookie = sign_in(client, TOKEN)
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/", "max-age=28800"} <= attributes
    assert "secure" not in attributes  # plain HTTP: a Secure cookie would never come back
    page = client.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    for name in (TRADE, "strategies"):
        assert f'data-migration="{name}" data-phase="progressing"' in page.text
    assert "signed in as <strong" in page.text and ">admin</strong>" in page.text


def test_under_tls_the_cookie_is_secure(gateway: Gateway, waits: list[float]) -> None:
    base = ADMIN.replace("http://", "https://")
    with TestClient(ByPort(gateway), base_url=base, follow_redirects=False) as client:
        assert "secure" in sign_in(client, TOKEN).lower().split("; ")


def test_a_wrong_token_is_refused_counted_and_slowed_down(
    client: TestClient, waits: list[float]
) -> None:
    for _ in range(3):
        response = client.post("/console/signin", data={"token": "guess"})
        assert response.status_code == 401
        assert "not valid" in response.text and "set-cookie" not in response.headers
    assert waits == [0.5, 1.0]  # before the 2nd and 3rd attempts
    metrics = client.get("/metrics").text
    assert "cutover_console_signin_failures_total 3.0" in metrics
    sign_in(client, TOKEN)  # the right token still signs in (after its wait) ...
    assert waits == [0.5, 1.0, 2.0]
    client.post("/console/signin", data={"token": "guess"})
    assert waits == [0.5, 1.0, 2.0]  # ... and clears the failures


def test_an_action_needs_the_csrf_token_and_is_recorded_with_the_role(
    client: TestClient, gateway: Gateway
) -> None:
    sign_in(client, TOKEN)
    csrf = csrf_of(client)
    refused = client.post(f"/console/m/{TRADE}/pause", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert client.post(f"/console/m/{TRADE}/pause").status_code == 403
    done = client.post(
        f"/console/m/{TRADE}/rollback", data={"csrf": csrf, "reason": "bad deploy 42"}
    )
    assert (done.status_code, done.headers["location"]) == (303, f"/console/m/{TRADE}")
    last = client.get(f"/migrations/{TRADE}", headers=AUTH).json()["history"][-1]
    assert (last["kind"], last["actor"], last["role"]) == ("rollback", "operator", "admin")
    assert last["reason"] == "bad deploy 42"
    page = client.get(f"/console/m/{TRADE}").text
    assert 'data-kind="rollback" data-actor="operator" data-role="admin"' in page
    assert "bad deploy 42" in page and "(admin, console)" in page
    # The phase no longer allows a rollback: the button is disabled, a POST says why.
    assert re.search(r'id="act-rollback" class="danger" disabled', page)
    again = client.post(f"/console/m/{TRADE}/rollback", data={"csrf": csrf})
    assert again.status_code == 303 and "error=already%20rolled%20back" in again.headers["location"]
    restarted = client.post(f"/console/m/{TRADE}/restart", data={"csrf": csrf})
    assert restarted.status_code == 303 and "error" not in restarted.headers["location"]
    weighed = client.post(f"/console/m/{TRADE}/weight", data={"csrf": csrf, "weight": "33"})
    assert weighed.status_code == 303
    document = client.get(f"/migrations/{TRADE}", headers=AUTH).json()
    assert (document["phase"], document["weight"]) == ("paused", 33.0)
    bad = client.post(f"/console/m/{TRADE}/weight", data={"csrf": csrf, "weight": "101"})
    assert "error=" in bad.headers["location"]


def test_the_view_token_sees_no_action_and_its_posts_are_refused(
    client: TestClient, gateway: Gateway
) -> None:
    sign_in(client, VIEW_TOKEN)
    page = client.get(f"/console/m/{TRADE}")
    assert page.status_code == 200
    assert "read-only" in page.text
    assert 'name="csrf"' not in page.text and "act-pause" not in page.text
    # A valid CSRF token of its own session: still refused.
    session = gateway.console.sessions.read(client.cookies[COOKIE])  # type: ignore[union-attr]
    assert session is not None and session.role == "viewer"
    csrf = session.csrf
    refused = client.post(f"/console/m/{TRADE}/pause", data={"csrf": csrf})
    assert refused.status_code == 403 and "read-only" in refused.text
    assert client.get(f"/migrations/{TRADE}", headers=AUTH).json()["phase"] == "progressing"


def test_the_json_api_keeps_its_bearer_check(client: TestClient) -> None:
    sign_in(client, TOKEN)  # a console session is no credential for the API
    assert client.get("/migrations").status_code == 401
    assert client.post(f"/migrations/{TRADE}/pause").status_code == 401
    assert client.get("/migrations", headers=AUTH).status_code == 200
    assert client.get("/console/static/console.js").status_code == 200


def test_the_live_stream_sends_the_rows_again_after_a_transition(
    client: TestClient, gateway: Gateway
) -> None:
    sign_in(client, TOKEN)
    stranger = TestClient(ByPort(gateway), base_url=ADMIN)  # no session (and no lifespan)
    assert stranger.get("/console/events").status_code == 401
    events: list[dict[str, str]] = []
    got_two = threading.Event()

    def read() -> None:
        with client.stream("GET", "/console/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 2:
                        got_two.set()
                        break

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for _ in range(200):
        if events:
            break
        got_two.wait(0.05)
    assert events and 'data-phase="progressing"' in events[0]["rows"]
    client.post(f"/migrations/{TRADE}/pause", headers=AUTH)
    assert got_two.wait(5.0), events
    assert 'data-migration="trade-engine" data-phase="paused"' in events[1]["rows"]
    assert "fleet" not in events[1]  # unchanged fragments are not sent again
    reader.join(5.0)
