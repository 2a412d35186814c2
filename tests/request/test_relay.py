"""Relaying a response body to the client, over a scripted backend response and client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cutover.request.body import ClientDisconnected
from cutover.request.relay import UpstreamBodyError, relay_body
from cutover.upstream.base import UpstreamReset


class Response:
    """Reads give ``chunks`` in order (an exception in the list is raised there)."""

    def __init__(self, *chunks: bytes | Exception, stall: bool = False) -> None:
        self.chunks = list(chunks)
        self.stall = stall  # after the first read, wait until aborted
        self.aborted = asyncio.Event()
        self.reads = 0

    async def read(self) -> tuple[bytes, bool]:
        self.reads += 1
        if self.stall and self.reads > 1:
            await self.aborted.wait()
            raise UpstreamReset("aborted")
        item = self.chunks.pop(0)
        if isinstance(item, Exception):
            raise item
        return item, bool(self.chunks)

    def abort(self) -> None:
        self.aborted.set()

    async def aclose(self) -> None:
        pass


class Capture:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.finished_ = False

    def capture(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def finished(self) -> None:
        self.finished_ = True


def relay(
    response: Response, *, body_read: bool = True, mirror: Any = None, receive: Any = None
) -> list[dict]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def wait_forever() -> dict:
        await asyncio.Event().wait()
        return {}

    asyncio.run(relay_body(response, receive or wait_forever, send, body_read, mirror))
    return sent


def test_a_one_read_body_is_one_message() -> None:
    mirror = Capture()
    sent = relay(Response(b"whole"), mirror=mirror)
    assert sent == [{"type": "http.response.body", "body": b"whole", "more_body": False}]
    assert mirror.chunks == [b"whole"] and mirror.finished_


def test_a_long_body_streams_chunk_by_chunk_into_the_mirror_too() -> None:
    mirror = Capture()
    sent = relay(Response(b"a", b"b", b""), mirror=mirror)
    assert [(m["body"], m["more_body"]) for m in sent] == [(b"a", True), (b"b", True), (b"", False)]
    assert mirror.chunks == [b"a", b"b", b""] and mirror.finished_


@pytest.mark.parametrize("body_read", [True, False])
def test_a_backend_failing_midway_is_an_upstream_body_error(body_read: bool) -> None:
    with pytest.raises(UpstreamBodyError) as caught:
        relay(Response(b"a", UpstreamReset("gone")), body_read=body_read)
    assert caught.value.kind == "reset"


def test_a_backend_failing_before_the_first_chunk_is_an_upstream_body_error() -> None:
    with pytest.raises(UpstreamBodyError):
        relay(Response(UpstreamReset("gone")))


def test_a_client_leaving_mid_body_aborts_the_backend_read() -> None:
    response = Response(b"a", b"never", stall=True)

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    with pytest.raises(ClientDisconnected):
        relay(response, receive=receive)
    assert response.aborted.is_set()
