#!/usr/bin/env python3
"""What request ids and the access log add to a request, in CPU time, in process.

The proxy's app (``create_app``) answers requests handed to it as ASGI calls, its backend a
stub that answers at once (no sockets, no uvicorn): what is left is the app's own work, so
the difference between three variants is what each adds:

- ``no-ids``:  request ids taken out (``adopt_request_id`` and ``stamping`` replaced by
               no-ops): the app as it was before them;
- ``ids``:     the app as shipped, the access log off;
- ``alog``:    the access log on, JSON to a file (the writer thread's formatting counted:
               the CPU time is the whole process's, and the log is closed before reading it).

Rounds are interleaved; the medians and the minimums (the least disturbed by other work on
a shared machine) are printed. ``proxy_bench.py`` measures the same on a
real proxy (``cutover-alog`` against ``cutover``); this one is steadier on a shared machine.

Usage: ``.venv/bin/python bench/access_log_bench.py [--requests N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cutover.request.app as app_module
from cutover.config import parse_settings
from cutover.ops.assembly import create_app
from cutover.types import Message, RawHeaders

BODY = b'{"id": 1, "name": "strategy", "status": "active", "created_at": "2026-12-01"}'


class StubResponse:
    def __init__(self) -> None:
        self.status = 200
        self.headers: RawHeaders = [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(BODY)).encode())]  # fmt: skip

    async def read(self) -> tuple[bytes, bool]:
        return BODY, False

    def abort(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class StubUpstream:
    async def start(self) -> None:
        pass

    async def send(self, method: str, url: str, headers: RawHeaders, body: Any) -> StubResponse:
        return StubResponse()

    def retire(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def settings(log: Path | None) -> Any:
    config: dict[str, Any] = {
        "backends": {"legacy": {"url": "http://legacy.test"}, "new": {"url": "http://new.test"}},
        "split": {"weight": 50, "sticky": "header:X-User-Id"},
    }
    if log is not None:
        config["access_log"] = {"enabled": True, "format": "json", "path": str(log)}
    return parse_settings(config)


async def drive(app: Any, requests: int) -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    for i in range(requests):
        scope = {
            "type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": "/api/v1/strategies", "raw_path": b"/api/v1/strategies",
            "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
            "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"),
                        (b"x-user-id", str(i).encode())],
        }  # fmt: skip
        await app(scope, receive, send)


def measure(variant: str, requests: int, tmp: Path) -> float:
    """CPU microseconds per request, every thread of the process counted."""
    log = Path(tempfile.mkstemp(suffix=".log", dir=tmp)[1]) if variant == "alog" else None
    app = create_app(settings(log))
    app.upstreams = app.forwarder.upstreams = {"legacy": StubUpstream(), "new": StubUpstream()}
    saved = app_module.adopt_request_id, app_module.stamping
    if variant == "no-ids":
        app_module.adopt_request_id = lambda scope: b""  # type: ignore[assignment]
        app_module.stamping = lambda send, request_id: send  # type: ignore[assignment]

    async def run() -> float:
        await app.startup()
        began = time.process_time()
        await drive(app, requests)
        await app.shutdown()  # the access log's last lines written
        return time.process_time() - began

    try:
        seconds = asyncio.run(run())
    finally:
        app_module.adopt_request_id, app_module.stamping = saved
    if log is not None:
        with log.open() as lines:
            count = sum(1 for _ in lines)
        log.unlink()
        assert count == requests, f"{count} lines for {requests} requests (some dropped)"
    return seconds * 1e6 / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    variants = ("no-ids", "ids", "alog")
    found: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="cutover-alog-bench-") as scratch:
        measure("ids", 2000, Path(scratch))  # warm-up
        for number in range(args.rounds):
            for variant in variants[number % 3 :] + variants[: number % 3]:
                found[variant].append(measure(variant, args.requests, Path(scratch)))
    for name, pick in (("median", statistics.median), ("minimum", min)):
        value = {v: pick(found[v]) for v in variants}
        print(f"  {name:<8} " + "  ".join(f"{v} {value[v]:5.1f}" for v in variants)
              + f" us/request: request ids add {value['ids'] - value['no-ids']:.1f}, "
              f"the access log {value['alog'] - value['ids']:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
