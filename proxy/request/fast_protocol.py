"""The proxy listener's protocol: ``BoundedHttpToolsProtocol`` (every framing rule, every
bound, the refusals) with the fast path in front of uvicorn's ASGI cycle.

At the end of each request head, a request the fast path can take (``fast_path.py``: a
bodiless GET or HEAD over HTTP/1.1, nothing pipelined before it) is handed to it, and its
``FastExchange`` stands where uvicorn's cycle would: the parser callbacks, a disconnect, the
drain and pipelining see it as they see a cycle. Everything else, and what the fast path
declines after routing, goes on to uvicorn's cycle and the app, as before.
"""

from __future__ import annotations

from typing import Any

from cutover.request.fast_exchange import FastExchange
from cutover.request.fast_path import FAST_METHODS, FastPath
from cutover.request.protocol import BoundedHttpToolsProtocol


class FastHttpProtocol(BoundedHttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The app (the proxy's, or the listeners' in front of it) offers one, or there is none.
        self.fast_path: FastPath | None = getattr(self.app, "fast_path", None)

    def on_headers_complete(self) -> None:
        fast = self.fast_path
        if fast is not None and self._fast_eligible():
            method = self.parser.get_method()
            name = FAST_METHODS.get(method)
            path, _, query = self.url.partition(b"?")
            if (
                name is not None
                and path[:1] == b"/"
                and b"%" not in path
                and b"#" not in self.url
                and self.url.isascii()
            ):
                scope = self.scope
                scope["method"] = name
                scope["path"] = path.decode("ascii")
                scope["raw_path"] = path
                scope["query_string"] = query
                exchange = fast.begin(self, scope, method)
                if exchange is not None:
                    self._in_head = False
                    self.cycle = exchange  # type: ignore[assignment]  # a cycle to uvicorn
                    return
        super().on_headers_complete()

    def _fast_eligible(self) -> bool:
        cycle = self.cycle
        if (
            self._codings is not None
            or self._reframing
            or self.expect_100_continue
            or self.pipeline
            or (cycle is not None and not cycle.response_complete)
            or self.root_path
            or self.parser.should_upgrade()
            or self.parser.get_http_version() != "1.1"
        ):
            return False
        for name, _ in self.headers:  # noqa: SIM110 - a loop: no generator per request
            if name == b"content-length":
                return False
        return True

    def resume_writing(self) -> None:
        super().resume_writing()
        cycle = self.cycle
        if type(cycle) is FastExchange:
            cycle.resume()


def configure(max_url: int, max_head: int) -> type[FastHttpProtocol]:
    """Set this process's bounds on the request head; the class for uvicorn's ``http``."""
    BoundedHttpToolsProtocol.max_url = max_url
    BoundedHttpToolsProtocol.max_head = max_head
    return FastHttpProtocol
