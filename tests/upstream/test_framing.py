"""The HTTP/1.1 framing rules as plain functions, without sockets: the request head, the
body's delimiting, chunk encoding, and how a response's body ends and whether the
connection may carry the next request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from cutover.upstream.framing import (
    LAST_CHUNK,
    close_delimited,
    encode_chunk,
    may_reuse,
    origin_fields,
    request_head,
)

ORIGIN = "http://backend:8080"
HOST = b"host: backend:8080\r\n"


async def stream() -> AsyncIterator[bytes]:
    yield b"part"


@pytest.mark.parametrize(
    ("url", "fields"),
    [
        ("http://backend", b"host: backend\r\n"),
        ("http://backend:80", b"host: backend\r\n"),
        ("https://backend:443", b"host: backend\r\n"),
        ("https://backend:80", b"host: backend:80\r\n"),
        ("http://backend:8080/base", b"host: backend:8080\r\n"),
        ("http://b\u00fccher.example", b"host: xn--bcher-kva.example\r\n"),
    ],
)
def test_the_host_field_names_the_backend_without_its_default_port(url: str, fields: bytes) -> None:
    assert origin_fields(urlsplit(url)) == fields


def test_userinfo_becomes_basic_authorization_and_leaves_the_host_field() -> None:
    fields = origin_fields(urlsplit("http://svc:p%40ss@backend:8080"))
    assert fields == b"host: backend:8080\r\nauthorization: Basic c3ZjOnBAc3M=\r\n"


def test_a_request_without_body_goes_out_as_given() -> None:
    headers = [(b"X-Case", b"Kept"), (b"accept", b"*/*"), (b"x-case", b"again")]
    head, chunked = request_head("GET", ORIGIN + "/a/%2Fb?q=%20x", ORIGIN, HOST, headers, None)
    assert head == (
        b"GET /a/%2Fb?q=%20x HTTP/1.1\r\nhost: backend:8080\r\n"
        b"X-Case: Kept\r\naccept: */*\r\nx-case: again\r\n\r\n"
    )
    assert not chunked


def test_the_origin_itself_is_asked_for_slash() -> None:
    head, _ = request_head("OPTIONS", ORIGIN, ORIGIN, HOST, [], None)
    assert head.startswith(b"OPTIONS / HTTP/1.1\r\n")


def test_a_url_on_another_origin_is_refused() -> None:
    with pytest.raises(ValueError, match="is not on"):
        request_head("GET", "http://elsewhere/x", ORIGIN, HOST, [], None)


def test_a_whole_body_is_sent_with_its_own_length() -> None:
    headers = [(b"content-length", b"999"), (b"transfer-encoding", b"chunked")]
    head, chunked = request_head("POST", ORIGIN + "/", ORIGIN, HOST, headers, b"body")
    assert head == b"POST / HTTP/1.1\r\n" + HOST + b"content-length: 4\r\n\r\n"
    assert not chunked


def test_a_stream_of_known_length_keeps_it_written_plainly() -> None:
    headers = [(b"content-length", b"007")]
    head, chunked = request_head("PUT", ORIGIN + "/", ORIGIN, HOST, headers, stream())
    assert head.endswith(b"\r\ncontent-length: 7\r\n\r\n")
    assert not chunked


def test_a_stream_of_unknown_length_goes_chunked_once() -> None:
    headers = [(b"transfer-encoding", b"chunked")]
    head, chunked = request_head("POST", ORIGIN + "/", ORIGIN, HOST, headers, stream())
    assert head == b"POST / HTTP/1.1\r\n" + HOST + b"transfer-encoding: chunked\r\n\r\n"
    assert chunked


def test_a_length_without_body_is_passed_on() -> None:
    head, chunked = request_head(
        "POST", ORIGIN + "/", ORIGIN, HOST, [(b"content-length", b"0")], None
    )
    assert head.endswith(b"\r\ncontent-length: 0\r\n\r\n")
    assert not chunked


def test_chunks_are_framed_with_their_length_in_hex() -> None:
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("status", "headers", "until_close"),
    [
        pytest.param(200, [(b"Content-Length", b"2")], False, id="length"),
        pytest.param(200, [(b"Transfer-Encoding", b"chunked")], False, id="chunked"),
        pytest.param(200, [(b"transfer-encoding", b"gzip, Chunked ")], False, id="chunked-last"),
        pytest.param(200, [], True, id="nothing"),
        pytest.param(200, [(b"content-type", b"text/plain")], True, id="no-framing"),
        pytest.param(200, [(b"transfer-encoding", b"gzip")], True, id="gzip"),
        pytest.param(200, [(b"transfer-encoding", b"chunked, gzip")], True, id="gzip-last"),
        pytest.param(204, [], False, id="204"),
        pytest.param(304, [], False, id="304"),
    ],
)
def test_a_body_without_length_or_chunked_coding_ends_at_close(
    status: int, headers: list[tuple[bytes, bytes]], until_close: bool
) -> None:
    assert close_delimited(status, headers) is until_close


@pytest.mark.parametrize(
    ("keep_alive", "request_sent", "reusable"),
    [(True, True, True), (False, True, False), (True, False, False), (False, False, False)],
)
def test_a_connection_is_reused_only_when_kept_alive_and_the_request_went_out_whole(
    keep_alive: bool, request_sent: bool, reusable: bool
) -> None:
    assert may_reuse(keep_alive, request_sent) is reusable
