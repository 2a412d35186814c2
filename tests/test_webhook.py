from __future__ import annotations

import json

import httpx
import pytest
import respx

from proxy.webhook import Webhook

pytestmark = pytest.mark.anyio
URL = "http://hooks.test/x"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_retries_until_delivered() -> None:
    with respx.MockRouter(assert_all_mocked=True) as router:
        route = router.post(URL)
        route.side_effect = [httpx.ConnectError("down"), httpx.Response(503), httpx.Response(200)]
        hook = Webhook(URL, backoff=0.001, transport=httpx.MockTransport(router.async_handler))
        assert await hook.notify({"kind": "rollback"}) is True
        await hook.aclose()
    assert route.call_count == 3
    assert json.loads(route.calls.last.request.content) == {"kind": "rollback"}


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
