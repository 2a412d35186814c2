#!/usr/bin/env python3
"""The CPU cost of each function a proxied request calls, in process, per call.

Settings come from ``proxy_bench.cutover_yaml`` (the ``cutover`` target: one migration at
weight 50, sticky ``header:X-User-Id``, four cohorts none of which matches, a deprecation
with headers, clients by ``X-Client-Id``, the usage count, the breaker on ``new``), loaded as
``cutover run`` loads a file. Inputs are what the request path hands these functions: scopes
as uvicorn's httptools protocol builds them (lowercased names) for wrk's requests (Host,
X-User-Id, X-Client-Id, a new user on each), and an upstream answer's raw headers as
httptools gives them (as the backend spelled them).

``--against REV`` measures the package of git revision ``REV`` too (extracted to a temporary
folder that shadows the installed one), in child processes interleaved with this tree's,
and prints both side by side: the median of the rounds and their spread (min-max).

Usage: ``.venv/bin/python bench/hot_functions_bench.py [--calls N] [--rounds N] [--against main]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
USERS = 1000  # distinct requests cycled through (wrk sends a new X-User-Id each time)
# What nginx, the benchmark's backend, answers with (httptools keeps the spelling).
RAW_RESPONSE = [(b"Server", b"nginx/1.22.1"), (b"Date", b"Tue, 01 Dec 2026 12:00:00 GMT"),
                (b"Content-Type", b"application/json"), (b"Content-Length", b"97"),
                (b"Connection", b"keep-alive")]  # fmt: skip


# What one request calls, beside the gate; the others are parts of these (decide's
# lookup, cohorts and bucket, the gate's state, identify and record) or per config.
ONE_REQUEST = ("adopt_request_id", "Splitter.decide", "Hops.request_headers", "Hops.for_backend",
               "Forwarder.response_extras", "Hops.response_headers", "request_head")  # fmt: skip


def scope_for(i: int) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 40000 + i),
        "scheme": "http", "method": "GET", "root_path": "", "path": "/api/v1/items",
        "raw_path": b"/api/v1/items", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"x-user-id", b"user-%d" % i),
                    (b"x-client-id", b"app-%d" % (i % 50))],
    }  # fmt: skip


def timed(calls: int, inputs: list[tuple[Any, ...]], function: Callable[..., Any]) -> float:
    """Microseconds per call of ``function(*args)``, ``args`` cycling through ``inputs``."""
    rounds = max(1, calls // len(inputs))
    began = time.perf_counter_ns()
    for _ in range(rounds):
        for args in inputs:
            function(*args)
    return (time.perf_counter_ns() - began) / (rounds * len(inputs)) / 1000


def measure(calls: int) -> dict[str, float]:
    """Microseconds per call, by function, of the ``cutover`` package imported."""
    sys.path.insert(0, str(BENCH_DIR))
    from urllib.parse import urlsplit

    from proxy_bench import cutover_yaml

    from cutover.config import load_settings
    from cutover.ops.assembly import create_app
    from cutover.request.request_id import adopt_request_id
    from cutover.request.splitter import bucket
    from cutover.request.target import target_url
    from cutover.upstream.framing import origin_fields, request_head

    with tempfile.TemporaryDirectory(prefix="cutover-hot-") as scratch:
        config = Path(scratch) / "cutover.yaml"
        config.write_text(cutover_yaml(8080, 8081, 8001, 8002, usage=Path(scratch) / "u.db"))
        app = create_app(load_settings(config))
    splitter, forwarder, hops = app.splitter, app.forwarder, app.forwarder.hops
    migration = splitter.migrations["bench"]
    gate = app.gates["bench"]
    assert migration.cohorts is not None and app.identifier is not None
    assert app.recorder is not None and "new" in app.breakers

    fresh = [scope_for(i) for i in range(USERS)]
    originals = [scope["headers"] for scope in fresh]
    scopes = [scope_for(i) for i in range(USERS)]
    for scope in scopes:
        adopt_request_id(scope)  # as the app does first: the headers now carry the id
    decisions = [splitter.decide(s["path"], s["method"], s["headers"], s["client"],
                                 s["query_string"]) for s in scopes]  # fmt: skip
    to_legacy = [(s, d) for s, d in zip(scopes, decisions, strict=True) if d.backend == "legacy"]
    upstream = [hops.request_headers(s) for s in scopes]
    base, origin = forwarder.base_urls["legacy"], "http://127.0.0.1:8001"
    fields = origin_fields(urlsplit(base))
    now = time.time()
    identities = [app.identifier.identify(s["headers"], s["client"]) for s in scopes]
    headers_client = [(s["headers"], s["client"]) for s in scopes]

    def adopt(scope: dict[str, Any], headers: list[Any]) -> bytes:
        scope["headers"] = headers  # as uvicorn made them: no id yet
        return adopt_request_id(scope)

    cases: dict[str, tuple[list[tuple[Any, ...]], Callable[..., Any]]] = {
        "adopt_request_id": (list(zip(fresh, originals, strict=True)), adopt),
        "Splitter.decide": (
            [
                (s["path"], s["method"], s["headers"], s["client"], s["query_string"])
                for s in scopes
            ],
            splitter.decide,
        ),
        "PrefixTable.lookup": ([("/api/v1/items", "GET")], splitter.table.lookup),
        "Cohorts.choose": (
            [(s["headers"], b"", s["client"], b"user-%d" % i) for i, s in enumerate(scopes)],
            migration.cohorts.choose,
        ),
        "bucket": ([(b"user-%d" % i,) for i in range(USERS)], bucket),
        "DeprecationGate.state": ([(now,)], gate.state),
        "ClientIdentifier.identify": (headers_client, app.identifier.identify),
        "UsageRecorder.record": (
            [
                ("bench", c, "GET", "/api/v1/items", None, False, now, "/api/v1/items")
                for c in identities
            ],
            app.recorder.record,
        ),
        "CutoverApp.through_gate": (
            [(gate, s, d, migration) for s, d in to_legacy],
            app.through_gate,
        ),
        "Hops.request_headers": ([(s,) for s in scopes], hops.request_headers),
        "Hops.for_backend": (
            [("legacy", h, s) for h, s in zip(upstream, scopes, strict=True)],
            hops.for_backend,
        ),
        "Forwarder.response_extras": ([(d,) for d in decisions], forwarder.response_extras),
        "Hops.response_headers": (
            [
                (d.backend, RAW_RESPONSE, forwarder.response_extras(d), s)
                for s, d in zip(scopes, decisions, strict=True)
            ],
            hops.response_headers,
        ),
        "request_head": (
            [
                ("GET", target_url(base, s), origin, fields, h, None)
                for s, h in zip(scopes, upstream, strict=True)
            ],
            request_head,
        ),
        "origin_fields (per config)": ([(urlsplit(base),)], origin_fields),
        "(loop, a no-op call)": ([(s,) for s in scopes], lambda scope: None),
    }
    results: dict[str, float] = {}
    for name, (inputs, function) in cases.items():
        timed(calls // 10, inputs, function)  # warm-up
        results[name] = timed(calls, inputs, function)
    # One request calls these once each (the gate only on its way to legacy, as here).
    share = len(to_legacy) / len(scopes)
    results["one request (sum)"] = (
        sum(results[name] for name in ONE_REQUEST) + share * (results["CutoverApp.through_gate"])
    )
    return results


def old_package(rev: str, folder: Path) -> Path:
    """``rev``'s ``proxy/`` extracted under ``folder`` as an importable ``cutover``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "proxy"],
                             check=True, capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    (folder / "proxy").rename(folder / "cutover")
    return folder


def child(calls: int, pythonpath: Path | None) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath is not None:  # ahead of the editable install's finder
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run([sys.executable, __file__, "--child", "--calls", str(calls)],
                          env=env, check=True, capture_output=True, text=True)  # fmt: skip
    return json.loads(done.stdout)


def report(runs: dict[str, list[dict[str, float]]]) -> None:
    sides = list(runs)
    names = list(runs[sides[0]][0])
    header = f"{'µs per call':<28}" + "".join(f"{side:>26}" for side in sides)
    print(header + ("   new/old" if len(sides) == 2 else ""))
    for name in names:
        line, medians = f"{name:<28}", []
        for side in sides:
            values = [run[name] for run in runs[side]]
            medians.append(statistics.median(values))
            line += f"{medians[-1]:>10.3f} ({min(values):6.3f}-{max(values):6.3f})"
        if len(sides) == 2 and medians[0] > 0:
            line += f"   {medians[1] / medians[0]:6.2f}"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="calls per function")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--against", help="a git revision to measure beside this tree")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.calls)))
        return 0
    with tempfile.TemporaryDirectory(prefix="cutover-hot-old-") as scratch:
        sides: dict[str, Path | None] = {"this tree": None}
        if args.against:
            sides = {args.against: old_package(args.against, Path(scratch)), **sides}
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        order = list(sides)
        for number in range(args.rounds):
            for side in order[number % 2 :] + order[: number % 2]:  # alternate who goes first
                runs[side].append(child(args.calls, sides[side]))
    report(runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
