from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
import respx

from cutover.rollout.webhook import Webhook
from tests.servers import serve

pytestmark = pytest.mark.anyio
URL = "http://hooks.test/x"


async def test_retries_until_delivered() -> None:
    with respx.MockRouter(assert_all_mocked=True) as router:
        route = router.post(URL)
        route.side_effect = [httpx.ConnectError("down"), httpx.Response(503), httpx.Response(200)]
        hook = Webhook(URL, backoff=0.001, transport=httpx.MockTransport(router.async_handler))
        assert await hook.notify({"kind": "rollback"}) is True
        await hook.aclose()
    assert route.call_count == 3
    assert json.loads(route.calls.last.request.content) == {"kind": "rollback", "sequence": 1}


async def test_gives_up_after_the_attempts(caplog) -> None:
    with respx.MockRouter(assert_all_mocked=True) as router:
        route = router.post(URL).respond(500)
        hook = Webhook(URL, attempts=3, backoff=0.001,
                       transport=httpx.MockTransport(router.async_handler))  # fmt: skip
        assert await hook.notify({"kind": "promote"}) is False
        await hook.aclose()
    assert route.call_count == 3
    assert "giving up after 3 attempts" in caplog.text


async def test_notify_does_not_block_the_caller() -> None:
    with respx.MockRouter(assert_all_mocked=True) as router:
        router.post(URL).respond(200)
        hook = Webhook(URL, transport=httpx.MockTransport(router.async_handler))
        task = hook.notify({"kind": "pause"})
        assert not task.done()  # returned before any delivery happened
        assert await task is True
        await hook.aclose()


class Receiver:
    """A webhook receiver that takes its time over the first payload it gets."""

    def __init__(self, slow_first: float) -> None:
        self.slow_first = slow_first
        self.received: list[dict[str, Any]] = []  # in the order they were handled
        self._lock = threading.Lock()
        self._requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        with self._lock:
            self._requests += 1
            first = self._requests == 1
        if first:
            await asyncio.sleep(self.slow_first)
        with self._lock:
            self.received.append(json.loads(body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_payloads_arrive_in_transition_order_and_numbered() -> None:
    receiver = Receiver(slow_first=0.5)
    with serve(receiver) as url:
        hook = Webhook(url)
        sent = [hook.notify({"kind": "promote", "n": n}) for n in (1, 2, 3)]
        assert await asyncio.gather(*sent) == [True, True, True]
        await hook.aclose()
    assert [p["n"] for p in receiver.received] == [1, 2, 3]
    assert [p["sequence"] for p in receiver.received] == [1, 2, 3]
