"""RFC 9457 problem responses, as ASGI messages."""

from __future__ import annotations

import asyncio
import json

import pytest

from cutover.request.problem import (
    problem_body,
    send_overloaded,
    send_problem,
    send_upstream_failure,
)
from cutover.upstream.base import UpstreamConnectError, UpstreamTimeout

BACKEND_HEADERS = [(b"x-cutover-backend", b"new")]


def sent_by(coroutine) -> tuple[int, dict[bytes, list[bytes]], dict]:
    messages: list[dict] = []

    async def send(message: dict) -> None:
        messages.append(message)

    asyncio.run(coroutine(send))
    start, body = messages
    assert body["more_body"] is False
    headers: dict[bytes, list[bytes]] = {}
    for name, value in start["headers"]:
        headers.setdefault(name, []).append(value)
    assert headers[b"content-length"] == [str(len(body["body"])).encode()]
    return start["status"], headers, json.loads(body["body"])


def test_problem_body() -> None:
    body = json.loads(problem_body(400, "Bad Request", "why", slug="bad", instance="/p", extra=1))
    assert body == {
        "type": "urn:cutover:problem:bad",
        "title": "Bad Request",
        "status": 400,
        "detail": "why",
        "instance": "/p",
        "extra": 1,
    }


def test_send_problem_headers() -> None:
    status, headers, body = sent_by(
        lambda send: send_problem(
            send, 413, "Too Large", "big", slug="s", headers=[(b"connection", b"close")]
        )
    )
    assert status == 413
    assert headers[b"content-type"] == [b"application/problem+json"]
    assert headers[b"cache-control"] == [b"no-store"]
    assert headers[b"connection"] == [b"close"]
    assert "instance" not in body


@pytest.mark.parametrize(
    ("error", "status", "title", "slug"),
    [
        (UpstreamConnectError("refused"), 502, "Bad Gateway", "upstream-connect"),
        (UpstreamTimeout("slow"), 504, "Gateway Timeout", "upstream-timeout"),
    ],
)
def test_upstream_failure(error, status: int, title: str, slug: str) -> None:
    got, headers, body = sent_by(
        lambda send: send_upstream_failure(send, error, "new", "/api/x", BACKEND_HEADERS)
    )
    assert got == status
    assert headers[b"x-cutover-backend"] == [b"new"]
    assert body["title"] == title
    assert body["type"] == "urn:cutover:problem:" + slug
    assert body["instance"] == "/api/x"
    assert body["backend"] == "new"
    assert "new backend" in body["detail"]


def test_overloaded() -> None:
    status, headers, body = sent_by(lambda send: send_overloaded(send, "new", 5, BACKEND_HEADERS))
    assert status == 503
    assert headers[b"retry-after"] == [b"5"]
    assert headers[b"x-cutover-backend"] == [b"new"]
    assert body["type"] == "urn:cutover:problem:overloaded"
    assert body["backend"] == "new"
