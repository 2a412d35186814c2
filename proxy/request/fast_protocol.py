"""The proxy listener's protocol: ``BoundedHttpToolsProtocol`` (every framing rule, every
bound, the refusals) with the fast path in front of uvicorn's ASGI cycle.

At the end of each request head, a request the fast path can take (``fast_path.py``: over
HTTP/1.1, without a body or a small one by Content-Length, nothing pipelined before it) is
handed to it, and its ``FastExchange`` stands where uvicorn's cycle would: the parser
callbacks (a body included), a disconnect, the drain and pipelining see it as a cycle.
Everything else, and what the fast path declines after routing, goes on to uvicorn's cycle
and the app, as before.
"""

from __future__ import annotations

from typing import Any

from cutover.config import LimitsConfig
from cutover.request.client_deadlines import Owed
from cutover.request.fast_exchange import FastExchange
from cutover.request.fast_path import FAST_METHODS, NO_LENGTH, FastPath
from cutover.request.protocol import BoundedHttpToolsProtocol


class FastHttpProtocol(BoundedHttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The app (the proxy's, or the listeners' in front of it) offers one, or there is none.
        self.fast_path: FastPath | None = getattr(self.app, "fast_path", None)

    def on_headers_complete(self) -> None:
        fast = self.fast_path
        length = None if fast is None else self._fast_length()
        if length is not None:
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
                exchange = fast.begin(self, scope, method, length)  # type: ignore[union-attr]
                if exchange is not None:
                    self._head_read()
                    self.cycle = exchange  # type: ignore[assignment]  # a cycle to uvicorn
                    return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is FastExchange:  # never an upgrade (_fast_length)
            self._in_body = False
            if not cycle.response_complete:
                cycle.more_body = False
                cycle.set()
            return
        super().on_message_complete()

    def _fast_length(self) -> int | None:
        """The request's Content-Length (``NO_LENGTH``: it has none) when the fast path may
        take it, else None."""
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
            return None
        length = NO_LENGTH
        for name, value in self.headers:
            if name == b"content-length":
                if length != NO_LENGTH or not value.isdigit():
                    return None  # the full path answers it (400)
                length = int(value)
        return length

    def _time_out(self, what: Owed, reason: str) -> None:
        if self.fast_path is not None:  # the proxy's listener (the admin's has none)
            self.fast_path.metrics.client_timeout(what)
        super()._time_out(what, reason)

    def resume_writing(self) -> None:
        super().resume_writing()
        cycle = self.cycle
        if type(cycle) is FastExchange:
            cycle.resume()


def configure(limits: LimitsConfig) -> type[FastHttpProtocol]:
    """Set this process's bounds on the request head and its deadlines for clients; the class
    for uvicorn's ``http``."""
    BoundedHttpToolsProtocol.max_url = limits.max_url_bytes
    BoundedHttpToolsProtocol.max_head = limits.max_header_bytes
    BoundedHttpToolsProtocol.header_timeout = limits.header_timeout
    BoundedHttpToolsProtocol.body_timeout = limits.body_timeout
    return FastHttpProtocol
