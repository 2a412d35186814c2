"""Two of the framing rules the listener's protocol (``protocol.py``) applies: which
Transfer-Encodings a request may have, and how an HTTP/1.0 client gets an answer without a
length (close-delimited)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

_NO_BODY_STATUSES = (204, 304)


def transfer_coding_problem(values: list[bytes], http_version: str) -> tuple[int, str] | None:
    """(status, reason) when a request's Transfer-Encoding field values make it unforwardable,
    else None. Codings are case-insensitive; empty list elements are ignored (RFC 9110 §5.6.1)."""
    if http_version == "1.0":
        return 400, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)"
    codings = [coding.strip(b" \t").lower() for value in values for coding in value.split(b",")]
    codings = [coding for coding in codings if coding]
    if not codings or codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
        return 400, "the request's Transfer-Encoding must end in chunked, once"
    if len(codings) > 1:
        others = b", ".join(codings[:-1]).decode("latin-1")
        return 501, f"the transfer coding {others} is not implemented (only chunked is)"
    return None


def close_delimited(cycle: RequestResponseCycle) -> Callable[[Any], Awaitable[None]]:
    """``cycle.send`` for an HTTP/1.0 request: a response without Content-Length goes out with
    neither Content-Length nor chunked (which 1.0 does not have, RFC 9112 §6.1), its end marked
    by closing the connection (uvicorn never keeps a 1.0 connection: ``connection: close``)."""
    send = cycle.send
    delimited = False

    async def send_to_http10(message: Any) -> None:
        nonlocal delimited
        kind = message["type"]
        if kind == "http.response.start" and not cycle.response_started:
            names = {name.lower() for name, _ in message.get("headers", ())}
            delimited = (
                b"content-length" not in names
                and b"transfer-encoding" not in names
                and cycle.scope["method"] != "HEAD"
                and message["status"] not in _NO_BODY_STATUSES
            )
            if delimited:
                cycle.chunked_encoding = False  # uvicorn then adds no transfer-encoding
                cycle.keep_alive = False
        elif delimited and kind == "http.response.body":
            # uvicorn writes a body without chunked as counted down from Content-Length:
            # allow exactly this piece.
            cycle.expected_content_length = len(message.get("body", b""))
        await send(message)

    return send_to_http10
