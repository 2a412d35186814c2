"""Serving under uvicorn (``ops.server``), the parts that need no running server: the
logging setup and its two filters, the server options, binding a listener. The drain
itself is tests/faults/test_drain.py's; several workers are tests/faults/test_workers.py's."""

from __future__ import annotations

import asyncio
import logging
import re
import socket

import pytest

from cutover.ops.server import (
    GRACE_CANCEL,
    UNFINISHED_RESPONSE,
    AbandonedResponseFilter,
    GraceCutFilter,
    ListenError,
    bind,
    logging_config,
    server_config,
)
from cutover.request.app import RESPONSE_ABANDONED


def record(msg: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, msg, (), exc_info)


def test_a_request_cut_by_the_grace_is_one_warning_line() -> None:
    cut = record("Exception in ASGI application", asyncio.CancelledError(GRACE_CANCEL))
    assert GraceCutFilter().filter(cut)
    assert (cut.levelname, cut.getMessage()) == (
        "WARNING", "request cut off: the shutdown grace ran out",
    )  # fmt: skip
    assert cut.exc_info is None
    other = record("Exception in ASGI application", ValueError("a bug"))
    assert GraceCutFilter().filter(other) and other.levelname == "ERROR"


def test_only_a_response_abandoned_on_purpose_loses_uvicorns_line() -> None:
    assert AbandonedResponseFilter().filter(record(UNFINISHED_RESPONSE))
    token = RESPONSE_ABANDONED.set(True)
    try:
        assert not AbandonedResponseFilter().filter(record(UNFINISHED_RESPONSE))
        assert AbandonedResponseFilter().filter(record("something else"))
    finally:
        RESPONSE_ABANDONED.reset(token)


def test_cutovers_loggers_go_to_stderr_at_the_level_asked() -> None:
    config = logging_config("warning")
    assert config["loggers"]["cutover"] == {
        "handlers": ["default"], "level": "WARNING", "propagate": False,
    }  # fmt: skip
    assert config["loggers"]["uvicorn.error"]["filters"] == ["grace_cut", "abandoned"]


def test_the_server_adds_no_headers_and_trusts_no_forwarded_ones() -> None:
    config = server_config(object(), timeout_keep_alive=3)
    assert (config.server_header, config.date_header, config.proxy_headers) == (False,) * 3
    assert (config.access_log, config.timeout_keep_alive) == (False, 3)


def test_a_port_in_use_is_a_listen_error() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.get_inheritable()
        port = sock.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port).close()
    finally:
        sock.close()


def test_an_unknown_host_is_a_listen_error() -> None:
    with pytest.raises(ListenError, match=re.escape("cannot listen on no-such-host.invalid:80")):
        bind("no-such-host.invalid", 80)
