"""Request ids over respx backends: a valid X-Request-Id is kept, an invalid one or several
replaced, a missing one made; the id reaches the backend and comes back on every answer,
the proxy's own problem+json answers included, with the access log off (always on)."""

from __future__ import annotations

import asyncio
import os
import re

import httpx
import pytest
import respx

from cutover.request.request_id import (
    MAX_LENGTH,
    REQUEST_ID_HEADER,
    adopt_request_id,
    is_valid,
    new_request_id,
    stamping,
)
from cutover.types import Message
from tests.conftest import LEGACY_URL

MADE = re.compile(r"[0-9a-f]{32}")
DRAWN = 256  # ids each side of a fork makes


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (b"abc-123", True),
        (b"x" * MAX_LENGTH, True),
        (b"x" * (MAX_LENGTH + 1), False),
        (b"with inner spaces", True),
        (b"", False),
        (b" padded", False),
        (b"tab\there", False),
        (b"caf\xc3\xa9", False),  # not ASCII
        (b"line\r\nbreak", False),
        (b"\x7f", False),
    ],
)
def test_what_a_valid_request_id_is(value: bytes, valid: bool) -> None:
    assert is_valid(value) is valid


def test_a_valid_id_is_kept_and_the_headers_untouched() -> None:
    headers = [(b"host", b"a"), (REQUEST_ID_HEADER, b"client-1")]
    scope = {"headers": headers}
    assert adopt_request_id(scope) == b"client-1"
    assert scope["headers"] is headers


@pytest.mark.parametrize(
    "sent",
    [[], [b"x" * 129], [b"caf\xc3\xa9"], [b"one", b"two"]],
    ids=["missing", "too-long", "not-ascii", "two"],
)
def test_otherwise_a_new_id_replaces_what_was_sent(sent: list[bytes]) -> None:
    scope = {"headers": [(b"host", b"a"), *((REQUEST_ID_HEADER, v) for v in sent)]}
    made = adopt_request_id(scope)
    assert MADE.fullmatch(made.decode())
    assert scope["headers"] == [(b"host", b"a"), (REQUEST_ID_HEADER, made)]


def test_new_ids_differ() -> None:
    assert len({adopt_request_id({"headers": []}) for _ in range(1000)}) == 1000


def test_the_stamp_goes_on_the_response_start_only() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        stamped = stamping(send, b"rid")
        await stamped({"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]})
        await stamped({"type": "http.response.body", "body": b"x"})

    asyncio.run(run())
    assert sent[0]["headers"] == [(b"a", b"1"), (REQUEST_ID_HEADER, b"rid")]
    assert sent[1] == {"type": "http.response.body", "body": b"x"}


def test_a_kept_id_reaches_the_backend_and_comes_back(upstreams: respx.MockRouter, proxy) -> None:
    route = upstreams.route(url__startswith=LEGACY_URL).respond(200, text="ok")
    response = proxy().get("/api/x", headers={"X-Request-Id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    assert route.calls.last.request.headers.get_list("x-request-id") == ["trace-42"]


def test_a_replaced_id_is_the_one_upstream_and_on_the_answer(
    upstreams: respx.MockRouter, proxy
) -> None:
    route = upstreams.route(url__startswith=LEGACY_URL).respond(200, text="ok")
    client = proxy()
    for sent in ("x" * 129, None):
        headers = {} if sent is None else {"X-Request-Id": sent}
        response = client.get("/api/x", headers=headers)
        made = response.headers["x-request-id"]
        assert MADE.fullmatch(made)
        assert route.calls.last.request.headers.get_list("x-request-id") == [made]


def test_the_backends_own_request_id_is_not_passed_on_beside_ours(
    upstreams: respx.MockRouter, proxy
) -> None:
    upstreams.route(url__startswith=LEGACY_URL).respond(
        200, text="ok", headers={"X-Request-Id": "the-backends"}
    )
    response = proxy().get("/api/x", headers={"X-Request-Id": "ours"})
    assert response.headers.get_list("x-request-id") == ["ours"]


def test_problem_answers_carry_the_id(upstreams: respx.MockRouter, proxy) -> None:
    upstreams.route(url__startswith=LEGACY_URL).mock(side_effect=httpx.ConnectError("down"))
    client = proxy(limits={"max_request_body": 4})
    answers = [
        client.request("TRACE", "/api/x", headers={"X-Request-Id": "r-405"}),
        client.post("/api/x", content=b"too large", headers={"X-Request-Id": "r-413"}),
        client.get("/api/x", headers={"X-Request-Id": "r-502"}),
    ]
    assert [(a.status_code, a.headers["x-request-id"]) for a in answers] == [
        (405, "r-405"), (413, "r-413"), (502, "r-502"),
    ]  # fmt: skip
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers)


def test_a_forked_worker_never_hands_out_its_parents_ids() -> None:
    new_request_id()  # the parent has ids ready to hand out
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        os.write(write, b"".join(new_request_id() for _ in range(DRAWN)))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        drawn = pipe.read()
    os.waitpid(child, 0)
    theirs = {drawn[at : at + 32] for at in range(0, len(drawn), 32)}
    ours = {new_request_id() for _ in range(DRAWN)}
    assert len(theirs) == DRAWN and not theirs & ours
