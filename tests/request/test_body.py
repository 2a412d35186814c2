"""Reading a client's request body: its length, whole, or as a bounded stream."""

from __future__ import annotations

import asyncio

import pytest

from cutover.request.body import (
    BadRequest,
    BodyStream,
    BodyTooLarge,
    ClientDisconnected,
    read_body,
    request_length,
)


def receiver(*messages: dict):
    queue = list(messages)

    async def receive() -> dict:
        return queue.pop(0)

    return receive


def part(body: bytes, more: bool = True) -> dict:
    return {"type": "http.request", "body": body, "more_body": more}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], (None, False)),
        ([(b"content-length", b"0")], (0, False)),
        ([(b"content-length", b"12")], (12, True)),
        ([(b"content-length", b" 12\t")], (12, True)),  # OWS around the value
        ([(b"transfer-encoding", b"chunked")], (None, True)),
    ],
)
def test_request_length(headers, expected) -> None:
    assert request_length(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-length", b"-1")],
        [(b"content-length", b"1e3")],
        [(b"content-length", b"5"), (b"content-length", b"5")],
    ],
)
def test_a_bad_content_length_is_a_bad_request(headers) -> None:
    with pytest.raises(BadRequest):
        request_length(headers)


def test_read_body_joins_the_parts() -> None:
    receive = receiver(part(b"ab"), part(b""), part(b"c", more=False))
    assert asyncio.run(read_body(receive)) == b"abc"


def test_read_body_notices_a_disconnect() -> None:
    with pytest.raises(ClientDisconnected):
        asyncio.run(read_body(receiver(part(b"ab"), {"type": "http.disconnect"})))


async def drain(stream: BodyStream) -> list[bytes]:
    return [chunk async for chunk in stream.chunks()]


def test_a_stream_yields_non_empty_chunks_and_counts_them() -> None:
    stream = BodyStream(receiver(part(b"ab"), part(b""), part(b"cd", more=False)), limit=None)
    assert asyncio.run(drain(stream)) == [b"ab", b"cd"]
    assert stream.size == 4 and stream.done.is_set() and not stream.too_large


def test_a_stream_over_the_limit_stops() -> None:
    stream = BodyStream(receiver(part(b"ab"), part(b"cd", more=False)), limit=3)
    with pytest.raises(BodyTooLarge):
        asyncio.run(drain(stream))
    assert stream.too_large and not stream.done.is_set()


def test_a_stream_notices_a_disconnect() -> None:
    stream = BodyStream(receiver(part(b"ab"), {"type": "http.disconnect"}), limit=None)
    with pytest.raises(ClientDisconnected):
        asyncio.run(drain(stream))
