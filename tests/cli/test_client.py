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
from tests.cli.answers import STATUS, problem

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
        (httpx.Response(500, text="oops"), "answered 500 Internal Server Error to PUT /split", 500),
        (httpx.Response(200, text="<html>"), "something other than a JSON object", 200),
        (httpx.Response(200, json=[1, 2]), "something other than a JSON object", 200),
    ],
)
def test_client_errors(
    response: httpx.Response | Exception, message: str, status: int | None
) -> None:
    with client_answering(response) as client, pytest.raises(AdminError) as error:
        client.set_weight(50)

    assert message in str(error.value)
    assert error.value.status == status


def test_client_without_token_sends_no_authorization() -> None:
    router = respx.MockRouter(base_url=ADMIN_URL, assert_all_called=False)
    route = router.get("/status").respond(json=STATUS)

    with AdminClient(ADMIN_URL, None, transport=httpx.MockTransport(router.handler)) as client:
        assert client.status() == STATUS

    assert "authorization" not in route.calls.last.request.headers


@pytest.mark.parametrize(
    ("method", "call", "path", "body"),
    [
        ("GET", AdminClient.status, "/status", None),
        ("POST", AdminClient.pause, "/rollout/pause", None),
        ("POST", AdminClient.resume, "/rollout/resume", None),
        ("POST", AdminClient.promote, "/rollout/promote", None),
        ("POST", AdminClient.restart, "/rollout/restart", None),
        ("POST", AdminClient.rollback, "/rollout/rollback", None),
        ("POST", lambda client: client.rollback("why"), "/rollout/rollback", {"reason": "why"}),
        ("PUT", lambda client: client.set_weight(25.0), "/split", {"weight": 25.0}),
    ],
)
def test_each_request(method: str, call, path: str, body: dict | None) -> None:
    router = respx.MockRouter(base_url=ADMIN_URL, assert_all_called=False)
    route = router.route(method=method, path=path).respond(json=STATUS)

    with AdminClient(ADMIN_URL, TOKEN, transport=httpx.MockTransport(router.handler)) as client:
        assert call(client) == STATUS

    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert (json.loads(request.content) if request.content else None) == body


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
        (httpx.Response(200, json=STATUS, headers={"x-cutover-backend": "legacy"}), NotAdminAPI),
    ],
)
def test_each_failure_is_a_specific_admin_error(
    response: httpx.Response | Exception, error: type[AdminError]
) -> None:
    with client_answering(response) as client, pytest.raises(AdminError) as raised:
        client.status()

    assert type(raised.value) is error


def test_a_problem_without_detail_shows_its_title() -> None:
    body = {"type": "urn:cutover:problem:x", "title": "Conflict", "status": 409}
    with (
        client_answering(httpx.Response(409, json=body)) as client,
        pytest.raises(AdminRefused) as raised,
    ):
        client.pause()

    assert (str(raised.value), raised.value.status) == ("Conflict", 409)


def test_the_proxy_listener_is_named() -> None:
    answer = httpx.Response(404, json={}, headers={"x-cutover-backend": "new"})
    with client_answering(answer) as client, pytest.raises(NotAdminAPI) as raised:
        client.promote()

    assert str(raised.value).startswith(
        f"{ADMIN_URL} is Cutover's proxy listener, not its admin API (POST /rollout/promote "
        "went to the new backend)"
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
