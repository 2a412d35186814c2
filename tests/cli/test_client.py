"""The admin API's HTTP client (cutover.cli.client) on a mock transport: the requests it
sends, the exception each failure becomes, and telling an admin API from other servers."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from cutover.cli.client import (
    AdminClient,
    AdminError,
    AdminRefused,
    AdminUnreachable,
    NotAdminAPI,
    token_problem,
    url_problem,
)
from tests.cli.answers import (
    FLEET,
    MIGRATION,
    SEVERAL,
    UNREACHABLE_DETAIL,
    fleet_unavailable,
    problem,
)

ADMIN_URL = "http://admin.test"
TOKEN = "s3cret"


def client_answering(response: httpx.Response | Exception) -> AdminClient:
    router = respx.MockRouter(base_url=ADMIN_URL, assert_all_called=False)
    router.route().mock(side_effect=[response])
    return AdminClient(ADMIN_URL, TOKEN, transport=httpx.MockTransport(router.handler))


@pytest.mark.parametrize(
    ("response", "message", "status"),
    [
        (httpx.ReadTimeout("slow"), "did not answer in time", None),
        (problem(422, "weight must be between 0 and 100"), "weight must be between", 422),
        (
            httpx.Response(500, text="oops"),
            "answered 500 Internal Server Error to PUT /migrations/trade-engine/weight",
            500,
        ),
        (httpx.Response(200, text="<html>"), "something other than a JSON object", 200),
        (httpx.Response(200, json=[1, 2]), "something other than a JSON object", 200),
    ],
)
def test_client_errors(
    response: httpx.Response | Exception, message: str, status: int | None
) -> None:
    with client_answering(response) as client, pytest.raises(AdminError) as error:
        client.set_weight("trade-engine", 50)

    assert message in str(error.value)
    assert error.value.status == status


def test_client_without_token_sends_no_authorization() -> None:
    router = respx.MockRouter(base_url=ADMIN_URL, assert_all_called=False)
    route = router.get("/migrations").respond(json=SEVERAL)

    with AdminClient(ADMIN_URL, None, transport=httpx.MockTransport(router.handler)) as client:
        assert client.migrations() == SEVERAL

    assert "authorization" not in route.calls.last.request.headers


NAME = "trade-engine"


@pytest.mark.parametrize(
    ("method", "call", "path", "body", "answer"),
    [
        ("GET", AdminClient.migrations, "/migrations", None, SEVERAL),
        ("GET", lambda c: c.migration(NAME), f"/migrations/{NAME}", None, MIGRATION),
        ("POST", lambda c: c.pause(NAME), f"/migrations/{NAME}/pause", None, MIGRATION),
        ("POST", lambda c: c.resume(NAME), f"/migrations/{NAME}/resume", None, MIGRATION),
        ("POST", lambda c: c.promote(NAME), f"/migrations/{NAME}/promote", None, MIGRATION),
        ("POST", lambda c: c.restart(NAME), f"/migrations/{NAME}/restart", None, MIGRATION),
        ("POST", lambda c: c.rollback(NAME), f"/migrations/{NAME}/rollback", None, MIGRATION),
        (
            "POST",
            lambda c: c.rollback(NAME, "why"),
            f"/migrations/{NAME}/rollback",
            {"reason": "why"},
            MIGRATION,
        ),
        (
            "PUT",
            lambda c: c.set_weight(NAME, 25.0),
            f"/migrations/{NAME}/weight",
            {"weight": 25.0},
            MIGRATION,
        ),
    ],
)
def test_each_request(method: str, call, path: str, body: dict | None, answer: dict) -> None:
    router = respx.MockRouter(base_url=ADMIN_URL, assert_all_called=False)
    route = router.route(method=method, path=path).respond(json=answer)

    with AdminClient(ADMIN_URL, TOKEN, transport=httpx.MockTransport(router.handler)) as client:
        assert call(client) == answer

    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert (json.loads(request.content) if request.content else None) == body


@pytest.mark.parametrize(
    ("name", "raw_path"),
    [
        ("a/b", b"/migrations/a%2Fb/pause"),
        ("x?y#z", b"/migrations/x%3Fy%23z/pause"),
        ("50% off", b"/migrations/50%25%20off/pause"),
    ],
)
def test_the_name_is_one_quoted_path_segment(name: str, raw_path: bytes) -> None:
    router = respx.MockRouter(base_url=ADMIN_URL, assert_all_called=False)
    route = router.route().respond(json=MIGRATION)

    with AdminClient(ADMIN_URL, TOKEN, transport=httpx.MockTransport(router.handler)) as client:
        client.pause(name)

    request = route.calls.last.request
    assert (request.url.raw_path, request.url.query) == (raw_path, b"")


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.ConnectError("refused"), AdminUnreachable),
        (httpx.ReadTimeout("slow"), AdminUnreachable),
        (httpx.RemoteProtocolError("garbled"), AdminUnreachable),
        (problem(401, "bad token"), AdminRefused),
        (problem(409, "not paused"), AdminRefused),
        (httpx.Response(503, text="down"), AdminRefused),
        (httpx.Response(404, text="Not Found"), NotAdminAPI),
        (httpx.Response(501, text="Unsupported method"), NotAdminAPI),
        (httpx.Response(200, json={"status": "ok"}), NotAdminAPI),
        (httpx.Response(200, json=SEVERAL, headers={"x-cutover-backend": "legacy"}), NotAdminAPI),
    ],
)
def test_each_failure_is_a_specific_admin_error(
    response: httpx.Response | Exception, error: type[AdminError]
) -> None:
    with client_answering(response) as client, pytest.raises(AdminError) as raised:
        client.migrations()

    assert type(raised.value) is error


def test_an_unknown_migration_is_refused_with_the_servers_detail() -> None:
    answer = problem(404, "no migration named 'nope' (configured: trade-engine, strategies)")
    with client_answering(answer) as client, pytest.raises(AdminRefused) as raised:
        client.migration("nope")

    assert str(raised.value) == "no migration named 'nope' (configured: trade-engine, strategies)"
    assert raised.value.status == 404


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "ok"},
        {"migrations": {"trade-engine": MIGRATION}},  # not a list
        {"migrations": [MIGRATION, {"phase": "manual"}]},  # one without a name
        {"migrations": [{"name": "x"}]},  # one without a phase
        {"migrations": ["trade-engine"]},
    ],
)
def test_a_list_that_is_not_of_migrations_is_not_an_admin_api(answer: object) -> None:
    with (
        client_answering(httpx.Response(200, json=answer)) as client,
        pytest.raises(NotAdminAPI) as raised,
    ):
        client.migrations()

    assert str(raised.value) == (
        f"{ADMIN_URL} is not a Cutover admin API: it answered GET /migrations with a JSON "
        "object that is not a list of migrations"
    )


@pytest.mark.parametrize(
    "answer", [{"phase": "progressing", "weight": 10}, {"name": "trade-engine"}, SEVERAL]
)
def test_a_document_that_is_not_a_migration_is_not_an_admin_api(answer: dict) -> None:
    with (
        client_answering(httpx.Response(200, json=answer)) as client,
        pytest.raises(NotAdminAPI) as raised,
    ):
        client.promote("trade-engine")

    assert str(raised.value).endswith(
        "answered POST /migrations/trade-engine/promote with a JSON object that is not a migration"
    )


def test_a_problem_without_detail_shows_its_title() -> None:
    body = {"type": "urn:cutover:problem:x", "title": "Conflict", "status": 409}
    with (
        client_answering(httpx.Response(409, json=body)) as client,
        pytest.raises(AdminRefused) as raised,
    ):
        client.pause("trade-engine")

    assert (str(raised.value), raised.value.status) == ("Conflict", 409)


def test_the_proxy_listener_is_named() -> None:
    answer = httpx.Response(404, json={}, headers={"x-cutover-backend": "new"})
    with client_answering(answer) as client, pytest.raises(NotAdminAPI) as raised:
        client.promote("trade-engine")

    assert str(raised.value).startswith(
        f"{ADMIN_URL} is Cutover's proxy listener, not its admin API (POST "
        "/migrations/trade-engine/promote went to the new backend)"
    )
    assert raised.value.status == 404


@pytest.mark.parametrize(
    ("url", "problem_start"),
    [
        ("http://127.0.0.1:9180", None),
        ("https://admin.example.com/base", None),
        ("localhost:9180", "must be an http:// or https:// URL with a host"),
        ("ftp://host", "must be an http:// or https:// URL with a host"),
        ("http://[::1", "'http://[::1' is not a valid URL"),
        ("http://127.0.0.1:99999", "'http://127.0.0.1:99999' is not a valid URL"),
        ("http://host/?x=1", "must not have a query or fragment"),
        ("http://host/#top", "must not have a query or fragment"),
        ("http://host /", "must not contain spaces or control characters"),
    ],
)
def test_url_problem(url: str, problem_start: str | None) -> None:
    found = url_problem(url)
    if problem_start is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem_start), found


@pytest.mark.parametrize(
    ("token", "problem_end"),
    [
        ("s3cret-._~", None),
        ("", None),
        ("tøken", "'ø' is not ASCII"),
        ("a\nb", "'\\n' is a control character"),
        ("a\x7fb", "'\\x7f' is a control character"),
        ("two words", "' ' is a space"),  # the server refuses such an admin_token too
    ],
)
def test_token_problem(token: str, problem_end: str | None) -> None:
    found = token_problem(token)
    if problem_end is None:
        assert found is None
    else:
        assert found is not None and found.endswith(problem_end), found


# --------------------------------------------------------------------------- GET /fleet


def fleet_answering(response: httpx.Response) -> tuple[AdminClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response

    return AdminClient(ADMIN_URL, TOKEN, transport=httpx.MockTransport(handler)), seen


def test_the_fleet_is_read_with_the_token() -> None:
    client, seen = fleet_answering(httpx.Response(200, json=FLEET))
    with client:
        assert client.fleet() == FLEET
    [request] = seen
    assert (request.method, request.url.path) == ("GET", "/fleet")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_an_admin_api_without_fleet_has_none() -> None:
    client, _ = fleet_answering(httpx.Response(404, text="Not Found"))
    with client:
        assert client.fleet() is None


def test_an_unreachable_store_answers_what_the_host_knows() -> None:
    client, _ = fleet_answering(fleet_unavailable())
    with client:
        fleet = client.fleet()
    assert fleet is not None
    assert fleet["error"] == UNREACHABLE_DETAIL
    assert fleet["store"] == {"up": False, "url": "redis://redis.lan:6379/0"}
    assert [host["id"] for host in fleet["hosts"]] == ["proxy-a"]
    assert "type" not in fleet  # the fleet's fields only, and why


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (problem(503, "the proxy is stopping"), AdminRefused, "the proxy is stopping"),
        (httpx.Response(503, text="busy"), AdminRefused, "answered 503 Service Unavailable"),
        (problem(401, "no"), AdminRefused, "refused the token"),
        (httpx.Response(200, json={"hosts": "x"}), NotAdminAPI, "not a fleet"),
    ],
)
def test_a_fleet_answer_that_is_not_one_is_an_error(
    response: httpx.Response, error: type[AdminError], message: str
) -> None:
    client, _ = fleet_answering(response)
    with client, pytest.raises(error) as raised:
        client.fleet()
    assert message in str(raised.value)
