"""A tiny ASGI upstream for the benchmark (run with uvicorn, one worker).

It plays three parts:

- the upload sink: a POST/PUT body is read and discarded, and the answer says how many
  bytes arrived (``{"received": N}``), so the benchmark can check nothing was lost;
- the large download when nginx is missing: ``GET /big?bytes=N`` streams N zero bytes;
- a plain JSON upstream (``GET`` anything else) when nginx is missing.

Configuration comes from the environment because uvicorn imports ``app`` by name:
``BENCH_BIG_BYTES`` is the default size of ``/big`` (1 GiB).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_BODY = (
    b'{"service":"bench-upstream","status":"ok","items":[1,2,3,4,5],'
    b'"note":"one hundred bytes of json"}'
)
CHUNK = bytes(256 * 1024)
BIG_BYTES = int(os.environ.get("BENCH_BIG_BYTES", str(1 << 30)))


async def drain(receive: Receive) -> int:
    """Read the whole request body, keep none of it, return its size."""
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return received
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return received


async def send_bytes(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_zeros(send: Send, size: int) -> None:
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(size).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    left = size
    while left > 0:
        chunk = CHUNK if left >= len(CHUNK) else CHUNK[:left]
        left -= len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
    if size == 0:
        await send({"type": "http.response.body", "body": b""})


def big_size(query: bytes) -> int:
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == b"bytes" and value.isdigit():
            return int(value)
    return BIG_BYTES


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    received = await drain(receive)
    method, path = scope["method"], scope["path"]
    if method in ("POST", "PUT"):
        body = json.dumps({"received": received}).encode()
        await send_bytes(send, 200, b"application/json", body)
    elif path == "/big":
        await send_zeros(send, big_size(scope.get("query_string", b"")))
    else:
        await send_bytes(send, 200, b"application/json", JSON_BODY)
