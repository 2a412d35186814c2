"""The upstream over an httpx transport, the seam tests hand a respx router or an
``httpx.MockTransport`` through: requests passed on as given, bodies never decoded, and
httpx's errors translated into the upstream error tree."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from cutover.config import TimeoutsConfig
from cutover.upstream.base import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReset,
    UpstreamTimeout,
)
from cutover.upstream.httpx_adapter import HttpxUpstream, translate
from tests.upstream.scripted import body_of

pytestmark = pytest.mark.anyio
URL = "http://backend.test"


@pytest.mark.parametrize(
    ("error", "translated"),
    [
        (httpx.ConnectTimeout("slow"), UpstreamTimeout),
        (httpx.ReadTimeout("slow"), UpstreamTimeout),
        (httpx.ConnectError("refused"), UpstreamConnectError),
        (httpx.RemoteProtocolError("garbled"), UpstreamProtocolError),
        (httpx.ReadError("reset"), UpstreamReset),
        (httpx.WriteError("reset"), UpstreamReset),
    ],
)
def test_httpx_errors_become_upstream_errors(
    error: httpx.TransportError, translated: type[UpstreamError]
) -> None:
    result = translate(error)
    assert type(result) is translated
    assert str(result) == str(error)


def test_a_translated_error_without_message_still_says_what_happened() -> None:
    assert str(translate(httpx.ReadTimeout(""))) == "timed out"
    assert str(translate(httpx.ReadError(""))) == "ReadError"


def upstream_over(handler) -> HttpxUpstream:
    timeouts = TimeoutsConfig(connect=1.5, read=7.0)
    return HttpxUpstream(URL, timeouts, httpx.MockTransport(handler))


async def test_a_request_goes_out_as_given_and_its_answer_comes_back_undecoded() -> None:
    seen: list[httpx.Request] = []
    headers = [(b"Content-Encoding", b"gzip"), (b"set-cookie", b"a"), (b"set-cookie", b"b")]

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        await request.aread()
        return httpx.Response(201, headers=headers, content=b"\x1f\x8b\x08")

    upstream = upstream_over(handler)
    sent = [(b"X-Case", b"Kept"), (b"content-length", b"4")]
    response = await upstream.send("PUT", URL + "/a?b=1", sent, b"body")
    assert response.status == 201
    assert response.headers[:3] == headers  # raw: case, order and repeats kept
    assert await body_of(response) == b"\x1f\x8b\x08"
    [request] = seen
    assert (request.method, str(request.url), request.content) == ("PUT", URL + "/a?b=1", b"body")
    assert (b"X-Case", b"Kept") in request.headers.raw
    assert request.extensions["timeout"] == {"connect": 1.5, "read": 7.0, "write": 7.0, "pool": 1.5}


async def test_a_failure_to_send_is_an_upstream_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(UpstreamConnectError, match="refused"):
        await upstream_over(handler).send("GET", URL + "/", [], None)


class BrokenStream(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"part"
        raise httpx.ReadError("reset mid-body")


async def test_a_failure_mid_body_is_an_upstream_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=BrokenStream())

    response = await upstream_over(handler).send("GET", URL + "/", [], None)
    assert await response.read() == (b"part", True)
    with pytest.raises(UpstreamReset, match="reset mid-body"):
        await response.read()
