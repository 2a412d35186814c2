"""The fastest-Python reference proxy: a bare ASGI callable over aiohttp, no features.

It reads the request body, picks one of two upstreams at random (50/50), forwards the
method, path, query and headers, and returns the status, headers and body. Its aiohttp
client is set up the way a proxy needs it (a keep-alive pool per upstream, no cookie jar,
no decompression, no automatic request headers, Cutover's timeouts) and it has nothing
else: no sticky hashing, no X-Forwarded-*/Via, no deprecation headers, no streaming.

Run it with uvicorn (one worker, uvloop + httptools, access log off)::

    REF_PROXY_UPSTREAMS=http://127.0.0.1:8001,http://127.0.0.1:8002 \\
        uvicorn --app-dir bench ref_proxy:app --loop uvloop --http httptools --no-access-log \\
        --no-server-header --no-date-header --no-proxy-headers

(the last three flags match what Cutover's own uvicorn settings turn off).
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
from yarl import URL

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

REQUEST_DROPPED = frozenset(
    {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"expect"}
)
RESPONSE_DROPPED = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1024, ttl_dns_cache=60),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=SKIP_AUTO_HEADERS,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=30.0),
    )


class RefProxy:
    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = [url.rstrip("/") for url in upstreams]
        self.sessions: list[aiohttp.ClientSession] = []

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.proxy(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.sessions = [new_session() for _ in self.upstreams]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for session in self.sessions:
                    await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def proxy(self, scope: Message, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        index = 0 if random.random() < 0.5 else 1
        path = scope.get("raw_path") or scope["path"].encode()
        url = self.upstreams[index] + path.decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name not in REQUEST_DROPPED
        ]
        try:
            async with self.sessions[index].request(
                scope["method"],
                URL(url, encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as response:
                payload = await response.read()
                status = response.status
                out = [
                    (name, value)
                    for name, value in response.raw_headers
                    if name.lower() not in RESPONSE_DROPPED
                ]
        except (aiohttp.ClientError, TimeoutError):
            status, out, payload = 502, [(b"content-length", b"0")], b""
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})


app = RefProxy(os.environ.get("REF_PROXY_UPSTREAMS", "").split(","))
