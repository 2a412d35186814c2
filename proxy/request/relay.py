"""The response body, from the backend to the client chunk by chunk, copied into the
shadow mirror when there is one."""

from __future__ import annotations

import asyncio

from cutover.request.body import ClientDisconnected
from cutover.request.disconnect import wait_for_disconnect
from cutover.request.mirror import Mirror
from cutover.types import Receive, Send
from cutover.upstream.base import UpstreamError, UpstreamResponse


class UpstreamBodyError(Exception):
    """The backend failed after the response started; the client connection is aborted."""

    def __init__(self, cause: UpstreamError) -> None:
        super().__init__(f"backend failed mid-response: {cause}")
        self.kind = cause.kind


async def relay_body(
    response: UpstreamResponse,
    receive: Receive,
    send: Send,
    body_read: bool,
    mirror: Mirror | None = None,
) -> None:
    """Send ``response``'s body to the client. ``body_read``: the request body has been read
    to its end, so ``receive`` only has the client's disconnect left to tell. UpstreamBodyError
    when the backend fails midway (the response cannot be finished), ClientDisconnected when
    the client left."""
    try:
        chunk, more = await response.read()
    except UpstreamError as exc:
        raise UpstreamBodyError(exc) from exc
    if not more:
        await send({"type": "http.response.body", "body": chunk, "more_body": False})
        if mirror is not None:
            mirror.capture(chunk)
            mirror.finished()
        return
    # A long response: watch for the client leaving so the upstream read stops too.
    watcher = asyncio.ensure_future(wait_for_disconnect(receive, response)) if body_read else None
    try:
        while more:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if mirror is not None:
                mirror.capture(chunk)
            try:
                chunk, more = await response.read()
            except UpstreamError as exc:
                if watcher is not None and watcher.done():
                    raise ClientDisconnected from None  # it left; we aborted the read
                raise UpstreamBodyError(exc) from exc
        await send({"type": "http.response.body", "body": chunk, "more_body": False})
        if mirror is not None:
            mirror.capture(chunk)
            mirror.finished()
    finally:
        if watcher is not None:
            watcher.cancel()
