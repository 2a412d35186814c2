#!/usr/bin/env python3
"""Cutover guard reaction benchmark: how fast the rollout guard takes a broken new backend
out of traffic, and that it leaves a healthy one alone.

Starts the two demo backends and ``cutover run`` (embedded guard source, default
thresholds, ``backends.new.metrics_url`` set, sticky ``X-User-Id`` split) as child processes
on free ports, drives an open-loop stream of ``POST /api/v1/backtests/bt-N/execute`` through
the proxy and, per scenario:

- ``error-rate``, ``latency``, ``memory``: weight 50 by hand (no rollout section); after a
  warm-up, inject the fault into the new backend and poll the admin ``/status`` every 100 ms
  until the weight is 0. Reports the reaction time and the failed requests to new;
- ``healthy``: a 10 → 50 → 100 rollout, no fault, for ``--healthy-seconds``. Reports false
  rollbacks, the phase reached and the guard's check counts.

Usage: ``.venv/bin/python bench/reaction_bench.py [--quick] [--scenarios LIST]``. Results are
printed and written to ``bench/results/reaction.json``. Exit status is 0 whether the targets
are met or not (130 on Ctrl-C, 1 if the setup itself cannot start).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import aiohttp
import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness import BenchError, Children, clean_env, free_port, machine_info, rss_bytes, write_json

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_FILE = BENCH_DIR / "results" / "reaction.json"
RUN_DIR = BENCH_DIR / "results" / "reaction-run"  # configs, state files and logs of the last run
PYTHON = sys.executable

SCENARIOS = ("error-rate", "latency", "memory", "healthy")
FAULTS: dict[str, dict[str, float]] = {
    "error-rate": {"error_rate": 0.5},
    "latency": {"extra_latency_ms": 200},
    # 1 MiB a request also slows new enough (p95 about 2x) that latency fails first;
    # 256 KiB at 100 req/s (25 MB/s) crosses 1.5x a ~65 MB baseline in under 2 s.
    "memory": {"leak_kb_per_request": 256},
}
# The guard's defaults (proxy/config/guard.py), written out so the generated config documents them.
GUARD: dict[str, Any] = {
    "interval": 5,
    "window": 60,
    "min_requests": 50,
    "failures_to_rollback": 2,
    "max_error_rate": 0.05,
    "max_latency_ratio": 2.0,
    "max_memory_ratio": 1.5,
}
STAGES = [10, 50, 100]
MANUAL_WEIGHT = 50
TARGET_INTERVALS = 2  # roll back within this many guard intervals of the fault

ROLLBACK_DEADLINE = 120.0  # seconds after the fault before a scenario is a FAIL
AFTER_ROLLBACK = 5.0  # seconds of load kept after the rollback, to see nothing reaches new
READY_DEADLINE = 30.0
STOP_DEADLINE = 10.0
POLL_INTERVAL = 0.1
TICK_POLL = 0.02  # while waiting for a guard evaluation before the fault
HEALTHY_POLL = 1.0
MAX_IN_FLIGHT = 512  # open-loop bound: a send due while this many are in flight is dropped
REQUEST_TIMEOUT = 10.0
USERS = 100_000
STRATEGIES = ("sma_crossover", "rsi_mean_reversion", "momentum", "buy_and_hold")
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA")
MIB = 2**20

T = TypeVar("T")


# --------------------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"subset of {','.join(SCENARIOS)}"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s (200)")
    parser.add_argument("--warmup", type=float, help="seconds of load before a fault (20)")
    parser.add_argument("--healthy-seconds", type=float, help="length of the healthy run (600)")
    parser.add_argument("--hold", type=float, help="rollout hold per stage, healthy run (60)")
    parser.add_argument(
        "--quick", action="store_true", help="warm-up 10 s, healthy run 60 s, hold 10 s"
    )
    parser.add_argument(
        "--fault-phase",
        type=float,
        default=0.2,
        help="inject the fault this many seconds after a guard evaluation (0.2)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS_FILE, help="where to write JSON")
    args = parser.parse_args(argv)
    quick = {"warmup": 10.0, "healthy_seconds": 60.0, "hold": 10.0}
    full = {"warmup": 20.0, "healthy_seconds": 600.0, "hold": 60.0}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    if args.rate <= 0 or args.warmup < 0 or args.healthy_seconds <= 0 or args.hold <= 0:
        parser.error("--rate, --healthy-seconds and --hold must be positive")
    if not 0 <= args.fault_phase < GUARD["interval"]:
        parser.error(f"--fault-phase must be in [0, {GUARD['interval']})")
    return args


# --------------------------------------------------------------------------- processes


def cutover_command() -> list[str]:
    script = Path(PYTHON).with_name("cutover")
    return [str(script)] if script.exists() else [PYTHON, "-m", "cutover"]


@dataclass
class Proxy:
    name: str  # among the children
    pid: int
    url: str
    admin_url: str


class Services:
    """The two backends (kept across scenarios) and one proxy per scenario, as children
    whose configs, state files and logs are in ``children.logdir``."""

    def __init__(self, children: Children) -> None:
        self.children = children
        self.scratch = children.logdir
        self.admin_token = secrets.token_urlsafe(16)
        self.new_token = secrets.token_urlsafe(16)
        self.legacy_url = f"http://127.0.0.1:{free_port()}"
        self.new_url = f"http://127.0.0.1:{free_port()}"

    def _backend(self, name: str, url: str, env: dict[str, str]) -> None:
        port = url.rsplit(":", 1)[1]
        argv = [PYTHON, "-m", f"cutover_demo.{name}", "--host", "127.0.0.1", "--port", port]
        self.children.start(name, argv, env=env, cwd=ROOT)
        self.children.wait_ready(name, f"{url}/healthz", READY_DEADLINE)

    def start_backends(self) -> None:
        self._backend("legacy_backend", self.legacy_url, clean_env())
        self.start_new()

    def start_new(self) -> None:
        env = clean_env(NEW_BACKEND_ADMIN_TOKEN=self.new_token)
        self._backend("new_backend", self.new_url, env)

    def restart_new(self) -> None:
        self.children.stop("new_backend", STOP_DEADLINE)
        self.start_new()

    @property
    def new_pid(self) -> int:
        return self.children.procs["new_backend"].pid

    def faults(self, method: str, body: dict[str, float] | None = None) -> None:
        headers = {"Authorization": f"Bearer {self.new_token}"}
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            response = client.request(method, f"{self.new_url}/admin/faults", json=body,
                                      headers=headers)  # fmt: skip
        if response.status_code != 200:
            raise BenchError(f"new backend refused {method} /admin/faults: {response.text}")

    def start_proxy(self, scenario: str, hold: float | None) -> Proxy:
        port, admin_port = free_port(), free_port()
        config = self.scratch / f"{scenario}.yaml"
        state = self.scratch / f"{scenario}-state.json"
        state.unlink(missing_ok=True)
        config.write_text(yaml.safe_dump(self.proxy_config(port, admin_port, state, hold)))
        argv = [*cutover_command(), "run", "--config", str(config), "--log-level", "warning"]
        env = clean_env(CUTOVER_ADMIN_TOKEN=self.admin_token)
        name = f"proxy-{scenario}"
        process = self.children.start(name, argv, env=env, cwd=ROOT)
        admin_url = f"http://127.0.0.1:{admin_port}"
        self.children.wait_ready(name, f"{admin_url}/readyz", READY_DEADLINE)
        return Proxy(name, process.pid, f"http://127.0.0.1:{port}", admin_url)

    def proxy_config(
        self, port: int, admin_port: int, state: Path, hold: float | None
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": port},
            "admin": {"host": "127.0.0.1", "port": admin_port},
            "backends": {
                "legacy": {"url": self.legacy_url},
                "new": {"url": self.new_url, "metrics_url": f"{self.new_url}/metrics"},
            },
            "split": {"weight": MANUAL_WEIGHT, "sticky": "header:X-User-Id"},
            "guard": GUARD,
            "state": {"path": str(state)},
        }
        if hold is not None:
            config["split"]["weight"] = 0
            config["rollout"] = {"stages": STAGES, "hold": hold}
        return config


# --------------------------------------------------------------------------- load


@dataclass(slots=True)
class Sample:
    sent: float  # wall clock (time.time), comparable with the proxy's transition times
    seconds: float
    status: int  # 0: no response (transport error or timeout)
    backend: str  # from X-Cutover-Backend; "?" without a response

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


class Load:
    """Open-loop traffic: a request is sent when it is due, whatever the earlier ones do."""

    def __init__(self, session: aiohttp.ClientSession, url: str, rate: float) -> None:
        self.session = session
        self.url = url
        self.rate = rate
        self.samples: list[Sample] = []
        self.dropped = 0
        self.lag: list[float] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._scheduler: asyncio.Task[None] | None = None
        self._rng = random.Random(1)

    def start(self) -> None:
        self._scheduler = asyncio.create_task(self._schedule())

    async def stop(self) -> None:
        """Stop sending and let the requests in flight finish."""
        self._stopping = True
        if self._scheduler is not None:
            await self._scheduler
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=REQUEST_TIMEOUT + 2)

    async def cancel(self) -> None:
        """Drop everything still running (after an error or Ctrl-C; a no-op after stop)."""
        self._stopping = True
        tasks = [t for t in (self._scheduler, *self._in_flight) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Load:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cancel()

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while not self._stopping:
            delay = start + n / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lag.append(max(0.0, -delay))
            n += 1
            if len(self._in_flight) >= MAX_IN_FLIGHT:
                self.dropped += 1
                continue
            task = asyncio.create_task(self._one(n))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    def _body_for(self) -> bytes:
        """One year of daily prices: legacy answers in about 2 ms of CPU (three years, 6 ms,
        would keep its single process near saturation at 90 % of 200 req/s)."""
        body = {"strategy": self._rng.choice(STRATEGIES), "symbol": self._rng.choice(SYMBOLS),
                "start": "2023-01-01", "end": "2023-12-31", "initial_capital": 100_000}  # fmt: skip
        return json.dumps(body).encode()

    async def _one(self, n: int) -> None:
        headers = {"X-User-Id": f"user-{self._rng.randrange(USERS)}",
                   "Content-Type": "application/json"}  # fmt: skip
        body = self._body_for()
        sent, started = time.time(), time.perf_counter()
        status, backend = 0, "?"
        try:
            async with self.session.post(
                f"{self.url}/api/v1/backtests/bt-{n}/execute", data=body, headers=headers
            ) as response:
                await response.read()
                status = response.status
                backend = response.headers.get("X-Cutover-Backend", "?")
        except (aiohttp.ClientError, TimeoutError):
            pass
        self.samples.append(Sample(sent, time.perf_counter() - started, status, backend))


@dataclass
class LoadStats:
    seconds: float
    sent: int
    dropped: int
    achieved_rps: float  # requests sent per second over the run
    answered_rps: float  # responses (any status) per second over the run
    send_lag_p99_ms: float  # how late the scheduler sent, 99th percentile
    by_backend: dict[str, int]
    failed: dict[str, int]  # 5xx or no response, per backend ("?" = no response)
    client_p95_ms: dict[str, float]  # before the fault (whole run without one)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def load_stats(load: Load, before: float | None = None) -> LoadStats:
    samples = load.samples
    if not samples:
        return LoadStats(0.0, 0, load.dropped, 0.0, 0.0, 0.0, {}, {}, {})
    first = min(s.sent for s in samples)
    seconds = max(s.sent for s in samples) - first or 1e-9
    answered = sum(1 for s in samples if s.status)
    p95: dict[str, float] = {}
    for backend in ("legacy", "new"):
        durations = [s.seconds for s in samples
                     if s.backend == backend and (before is None or s.sent < before)]  # fmt: skip
        if durations:
            p95[backend] = round(percentile(durations, 0.95) * 1000, 2)
    return LoadStats(
        seconds=round(seconds, 1),
        sent=len(samples),
        dropped=load.dropped,
        achieved_rps=round(len(samples) / seconds, 1),
        answered_rps=round(answered / seconds, 1),
        send_lag_p99_ms=round(percentile(load.lag, 0.99) * 1000, 2),
        by_backend=dict(Counter(s.backend for s in samples)),
        failed=dict(Counter(s.backend for s in samples if s.failed)),
        client_p95_ms=p95,
    )


@dataclass
class NewCounts:
    sent: int = 0
    failed: int = 0


def new_counts(samples: Sequence[Sample], start: float, end: float | None) -> NewCounts:
    """Requests answered by new sent in [start, end) (one with no response at all names no
    backend: those are in the load's ``failed["?"]``)."""
    counts = NewCounts()
    for s in samples:
        if s.backend == "new" and s.sent >= start and (end is None or s.sent < end):
            counts.sent += 1
            counts.failed += s.failed
    return counts


# --------------------------------------------------------------------------- admin API


class Admin:
    def __init__(self, session: aiohttp.ClientSession, proxy: Proxy, token: str) -> None:
        self.session = session
        self.url = proxy.admin_url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def status(self) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/status", headers=self.headers) as response:
            if response.status != 200:
                raise BenchError(f"GET /status: {response.status} {await response.text()}")
            return dict(await response.json())

    async def guard_checks(self) -> dict[str, dict[str, int]]:
        async with self.session.get(f"{self.url}/metrics") as response:
            text = await response.text()
        checks: dict[str, dict[str, int]] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "cutover_guard_checks":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    by_result = checks.setdefault(sample.labels["check"], {})
                    by_result[sample.labels["result"]] = int(sample.value)
        return checks

    async def evaluations(self) -> int:
        """Check results counted so far: rises by one per check at every evaluation."""
        return sum(sum(by_result.values()) for by_result in (await self.guard_checks()).values())


async def next_evaluation(admin: Admin, timeout: float) -> float:
    """When the next guard evaluation was seen (``cutover_guard_checks_total`` rising),
    polled every TICK_POLL seconds: at most that plus one request after the evaluation."""
    deadline = time.time() + timeout
    seen = await admin.evaluations()
    while time.time() < deadline:
        await asyncio.sleep(TICK_POLL)
        if await admin.evaluations() > seen:
            return time.time()
    raise BenchError(f"no guard evaluation in {timeout:.0f} s")


async def resident_memory(session: aiohttp.ClientSession, metrics_url: str) -> float | None:
    try:
        async with session.get(metrics_url) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "process_resident_memory_bytes":
            return float(family.samples[0].value)
    return None


def transition_time(status: dict[str, Any], kind: str) -> float | None:
    """Wall-clock time of the last transition of this kind in the status history."""
    for transition in reversed(status["history"]):
        if transition["kind"] == kind:
            return dt.datetime.fromisoformat(transition["at"]).timestamp()
    return None


def session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
    )


# --------------------------------------------------------------------------- fault scenarios


@dataclass
class Watch:
    detected: float | None = None  # when polling first saw weight 0
    first_failure: float | None = None  # when polling first saw a failed evaluation
    memory_over: float | None = None  # when new's RSS first exceeded the guard's threshold
    memory_peak: float | None = None
    status: dict[str, Any] = field(default_factory=dict)


async def watch_rollback(
    admin: Admin, http: aiohttp.ClientSession, t_fault: float, memory_url: str | None
) -> Watch:
    watch = Watch()
    baseline: float | None = None
    while time.time() < t_fault + ROLLBACK_DEADLINE:
        status = await admin.status()
        now = time.time()
        watch.status = status
        if watch.first_failure is None and status["consecutive_failures"] >= 1:
            watch.first_failure = now
        if memory_url is not None:
            baseline = status["baseline_memory_bytes"]
            rss = await resident_memory(http, memory_url)
            if rss is not None:
                watch.memory_peak = max(rss, watch.memory_peak or 0.0)
                limit = (baseline or float("inf")) * GUARD["max_memory_ratio"]
                if watch.memory_over is None and rss > limit:
                    watch.memory_over = time.time()
        if status["weight"] == 0:
            watch.detected = now
            return watch
        await asyncio.sleep(POLL_INTERVAL)
    return watch


@dataclass
class FaultResult:
    scenario: str
    fault: dict[str, float]
    passed: bool
    rolled_back: bool
    reaction_s: float | None
    reaction_intervals: float | None
    first_failure_s: float | None
    detected_s: float | None
    fault_phase_s: float  # the fault came this long after a guard evaluation
    failing_checks: list[str]  # the checks that failed in the evaluation that rolled back
    reason: str | None
    failure: dict[str, Any] | None
    failures_before_fault: int
    new_during: NewCounts
    new_after: NewCounts
    load: LoadStats
    proxy_rss_bytes: int | None
    new_rss_bytes: int | None
    guard_checks: dict[str, dict[str, int]]
    memory: dict[str, float | None] | None = None


def since(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 2)


async def inject_after_evaluation(
    admin: Admin, services: Services, fault: dict[str, float], phase: float
) -> tuple[float, float]:
    """Wait for a guard evaluation, inject the fault ``phase`` seconds later; return both
    instants (the fault's is taken just before the PUT is sent)."""
    t_eval = await next_evaluation(admin, 2 * GUARD["interval"] + 5)
    await asyncio.sleep(max(0.0, t_eval + phase - time.time()))
    t_fault = time.time()
    await asyncio.to_thread(services.faults, "PUT", fault)
    return t_eval, t_fault


@dataclass
class FaultRun:
    """What one fault scenario observed, before it is judged."""

    t_eval: float
    t_fault: float
    before: dict[str, Any]  # /status just before the fault
    watch: Watch
    checks: dict[str, dict[str, int]]
    load: Load


async def fault_scenario(
    name: str, services: Services, proxy: Proxy, args: argparse.Namespace
) -> FaultResult:
    memory_url = f"{services.new_url}/metrics" if name == "memory" else None
    async with session(MAX_IN_FLIGHT) as client, session(4) as http:
        admin = Admin(http, proxy, services.admin_token)
        async with Load(client, proxy.url, args.rate) as load:
            await asyncio.sleep(args.warmup)
            before = await admin.status()
            t_eval, t_fault = await inject_after_evaluation(
                admin, services, FAULTS[name], args.fault_phase
            )
            watch = await watch_rollback(admin, http, t_fault, memory_url)
            if watch.detected is not None:
                await asyncio.sleep(AFTER_ROLLBACK)
            await load.stop()
        checks = await admin.guard_checks()
    run = FaultRun(t_eval, t_fault, before, watch, checks, load)
    return judge_fault(name, run, proxy, services)


def judge_fault(name: str, run: FaultRun, proxy: Proxy, services: Services) -> FaultResult:
    interval = float(GUARD["interval"])
    status, t_fault = run.watch.status, run.t_fault
    t_rollback = transition_time(status, "rollback") if run.watch.detected else None
    reaction = None if t_rollback is None else t_rollback - t_fault
    samples = run.load.samples
    new_after = new_counts(samples, t_rollback, None) if t_rollback else NewCounts()
    rolled_back = reaction is not None
    memory = None
    if name == "memory":
        memory = {
            "baseline_bytes": status.get("baseline_memory_bytes"),
            "over_threshold_s": since(run.watch.memory_over, t_fault),
            "peak_bytes": run.watch.memory_peak,
        }
    failing = [n for n, check in status.get("checks", {}).items() if check["result"] == "fail"]
    return FaultResult(
        scenario=name,
        fault=FAULTS[name],
        passed=reaction is not None
        and reaction <= TARGET_INTERVALS * interval
        and new_after.failed == 0,
        rolled_back=rolled_back,
        reaction_s=None if reaction is None else round(reaction, 2),
        reaction_intervals=None if reaction is None else round(reaction / interval, 2),
        first_failure_s=since(run.watch.first_failure, t_fault),
        detected_s=since(run.watch.detected, t_fault),
        fault_phase_s=round(t_fault - run.t_eval, 3),
        failing_checks=sorted(failing) if rolled_back else [],
        reason=status.get("reason") if rolled_back else None,
        failure=status.get("failure") if rolled_back else None,
        failures_before_fault=int(run.before["consecutive_failures"]),
        new_during=new_counts(samples, t_fault, t_rollback),
        new_after=new_after,
        load=load_stats(run.load, before=t_fault),
        proxy_rss_bytes=rss_bytes(proxy.pid),
        new_rss_bytes=rss_bytes(services.new_pid),
        guard_checks=run.checks,
        memory=memory,
    )


# --------------------------------------------------------------------------- healthy run


@dataclass
class HealthyResult:
    scenario: str
    passed: bool
    seconds: float
    hold: float
    false_rollbacks: int
    phase: str
    weight: float
    transitions: list[dict[str, Any]]
    guard_checks: dict[str, dict[str, int]]
    client_errors: int
    load: LoadStats
    proxy_rss_bytes: int | None
    new_rss_bytes: int | None
    baseline_memory_bytes: float | None
    not_passed: list[dict[str, Any]]  # every failed or errored check, with its evaluation


async def healthy_scenario(
    services: Services, proxy: Proxy, args: argparse.Namespace
) -> HealthyResult:
    async with session(MAX_IN_FLIGHT) as client, session(4) as http:
        admin = Admin(http, proxy, services.admin_token)
        started = time.time()
        async with Load(client, proxy.url, args.rate) as load:
            events = await follow_rollout(admin, started, args.healthy_seconds)
            await load.stop()
        status = await admin.status()
        checks = await admin.guard_checks()
    transitions = [
        {"at_s": round(dt.datetime.fromisoformat(t["at"]).timestamp() - started, 1),
         "kind": t["kind"], "to_phase": t["to_phase"], "to_weight": t["to_weight"],
         "reason": t["reason"]}
        for t in status["history"]
    ]  # fmt: skip
    rollbacks = sum(1 for t in transitions if t["kind"] == "rollback")
    stats = load_stats(load)
    return HealthyResult(
        scenario="healthy",
        passed=rollbacks == 0,
        seconds=args.healthy_seconds,
        hold=args.hold,
        false_rollbacks=rollbacks,
        phase=status["phase"],
        weight=status["weight"],
        transitions=transitions,
        guard_checks=checks,
        client_errors=sum(stats.failed.values()),
        load=stats,
        proxy_rss_bytes=rss_bytes(proxy.pid),
        new_rss_bytes=rss_bytes(services.new_pid),
        baseline_memory_bytes=status.get("baseline_memory_bytes"),
        not_passed=events,
    )


async def follow_rollout(admin: Admin, started: float, seconds: float) -> list[dict[str, Any]]:
    """Wait out the healthy run. After every guard evaluation (seen as the check counters
    rising), record each check that did not pass; print those and every transition."""
    seen_transitions, seen_checks = 0, await admin.evaluations()
    events: list[dict[str, Any]] = []
    while (left := started + seconds - time.time()) > 0:
        await asyncio.sleep(min(HEALTHY_POLL, left))
        evaluations = await admin.evaluations()
        if evaluations == seen_checks:
            continue
        seen_checks = evaluations
        status = await admin.status()
        at = round(time.time() - started, 1)
        for t in status["history"][seen_transitions:]:
            t_at = max(0.0, dt.datetime.fromisoformat(t["at"]).timestamp() - started)
            print(f"  healthy: +{t_at:5.0f} s  {t['kind']:<9} {t['to_phase']} "
                  f"{t['to_weight']:g}%: {t['reason']}", flush=True)  # fmt: skip
        seen_transitions = len(status["history"])
        for name, check in status["checks"].items():
            if check["result"] in ("fail", "error"):
                events.append(
                    {"at_s": at, "weight": status["weight"], "phase": status["phase"],
                     "in_a_row": status["consecutive_failures"], "check": name, **check}
                )  # fmt: skip
                print(f"  healthy: +{at:5.0f} s  {check['result']:<9} {name} at "
                      f"{status['weight']:g}%: {check['detail']}", flush=True)  # fmt: skip
    return events


def event_summary(events: list[dict[str, Any]]) -> list[str]:
    """Non-passing checks of the healthy run, grouped by check, result and weight."""
    groups = Counter((e["check"], e["result"], e["weight"]) for e in events)
    lines = [
        f"  {result} {check} at {weight:g}%: {count}x"
        for (check, result, weight), count in sorted(groups.items())
    ]
    fails = [e for e in events if e["result"] == "fail"]
    if fails:
        longest = max(e["in_a_row"] for e in fails)
        lines.append(f"  longest run of failed evaluations: {longest} "
                     f"(a rollback takes {GUARD['failures_to_rollback']})")  # fmt: skip
    return lines


# --------------------------------------------------------------------------- running


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def run_scenario(
    name: str, services: Services, args: argparse.Namespace
) -> FaultResult | HealthyResult:
    services.faults("DELETE")
    hold = args.hold if name == "healthy" else None
    proxy = services.start_proxy(name, hold)
    try:
        if name == "healthy":
            return run_async(healthy_scenario(services, proxy, args))
        return run_async(fault_scenario(name, services, proxy, args))
    finally:
        services.children.stop(proxy.name, STOP_DEADLINE)
        services.faults("DELETE")


def run_all(args: argparse.Namespace) -> list[FaultResult | HealthyResult]:
    results: list[FaultResult | HealthyResult] = []
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    children = Children(RUN_DIR)
    try:
        services = Services(children)
        services.start_backends()
        dirty = False
        for name in args.scenarios:
            if dirty:
                services.restart_new()  # a clean RSS baseline after the leak
            print(f"scenario {name}: running ...", flush=True)
            result = run_scenario(name, services, args)
            print(f"scenario {name}: {'PASS' if result.passed else 'FAIL'}", flush=True)
            results.append(result)
            dirty = name == "memory"
    finally:
        children.stop_all(STOP_DEADLINE)
    return results


# --------------------------------------------------------------------------- report


def fmt_mb(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.0f} MiB"


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def fault_row(r: FaultResult) -> str:
    fault = ",".join(f"{k}={v:g}" for k, v in r.fault.items())
    if r.reaction_s is None:
        reaction = f"none in {ROLLBACK_DEADLINE:.0f} s"
    else:
        reaction = f"{r.reaction_s:.1f} s = {r.reaction_intervals:.2f} iv"
    during = f"{r.new_during.failed}/{r.new_during.sent}"
    after = f"{r.new_after.failed}/{r.new_after.sent}"
    verdict = "PASS" if r.passed else "FAIL"
    failed = ",".join(r.failing_checks) or "-"
    return (f"{r.scenario:<11}{fault:<26}{r.fault_phase_s:>6.2f} s{fmt_s(r.first_failure_s):>10}  "
            f"{reaction:<17}{during:>9}{after:>7}  {verdict:<7}{failed:<14}"
            f"{r.reason or '-'}")  # fmt: skip


def healthy_lines(r: HealthyResult) -> list[str]:
    verdict = "PASS" if r.passed else "FAIL"
    promoted = [t for t in r.transitions if t["kind"] == "promote"]
    reached = ", ".join(f"{t['to_weight']:g}% at +{t['at_s']:.0f} s" for t in promoted)
    return [
        f"{'healthy':<11}no fault, {r.seconds:.0f} s, stages {STAGES}, hold {r.hold:g} s:  "
        f"false rollbacks {r.false_rollbacks}  {verdict}",
        f"  phase {r.phase} at {r.weight:g}% ({reached or 'no promotion'}); "
        f"client errors {r.client_errors}",
        f"  guard checks: {checks_line(r.guard_checks)}",
        *event_summary(r.not_passed),
    ]


def checks_line(checks: dict[str, dict[str, int]]) -> str:
    parts = []
    for check, by_result in sorted(checks.items()):
        counts = " ".join(f"{k}={v}" for k, v in sorted(by_result.items()))
        parts.append(f"{check}: {counts}")
    return "; ".join(parts)


def load_row(r: FaultResult | HealthyResult) -> str:
    s = r.load
    p95 = " / ".join(f"{s.client_p95_ms.get(b, float('nan')):.1f}" for b in ("legacy", "new"))
    failed = sum(s.failed.values())
    return (f"{r.scenario:<11}{s.achieved_rps:>8.1f}{s.answered_rps:>9.1f}{s.sent:>8}{s.dropped:>6}"
            f"{failed:>7}{s.send_lag_p99_ms:>9.1f}  {p95:>13}  {fmt_mb(r.proxy_rss_bytes):>9}"
            f"  {fmt_mb(r.new_rss_bytes):>9}")  # fmt: skip


def header(args: argparse.Namespace, machine: dict[str, Any]) -> list[str]:
    items = [f"{k} {v:g}" for k, v in GUARD.items()]
    return [
        f"Cutover guard reaction benchmark  {dt.datetime.now().isoformat(timespec='seconds')}",
        f"machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Python {machine['python']}; "
        f"load average {machine['loadavg_start'][0]:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end",
        f"guard:   embedded source, default thresholds: {', '.join(items[:3])},",
        f"         {', '.join(items[3:])}",
        f"load:    {args.rate:g} req/s open loop of POST /api/v1/backtests/bt-N/execute, "
        f"sticky X-User-Id ({USERS} users)",
        f"faults:  weight {MANUAL_WEIGHT} by hand; warm-up {args.warmup:g} s, then the fault "
        f"{args.fault_phase:g} s after the next guard evaluation",
        f"targets: rollback within {TARGET_INTERVALS} guard intervals "
        f"({TARGET_INTERVALS * GUARD['interval']} s) of the fault and no failed request to new",
        "         after it; healthy run: zero false rollbacks",
    ]


def report(
    results: list[FaultResult | HealthyResult],
    args: argparse.Namespace,
    machine: dict[str, Any],
) -> str:
    lines = [*header(args, machine), ""]
    faults = [r for r in results if isinstance(r, FaultResult)]
    if faults:
        lines.append(f"{'scenario':<11}{'fault':<26}{'phase':>8}{'1st fail':>10}  "
                     f"{'reaction':<17}{'new':>9}{'after':>7}  {'result':<7}"
                     f"{'failed':<14}rollback reason")  # fmt: skip
        lines += [fault_row(r) for r in faults]
        lines += [
            "  phase: the fault came that long after a guard evaluation; 1st fail: the first",
            "  failed evaluation seen after the fault; reaction: fault to the rollback transition",
            "  (iv = guard intervals); new: requests failed/sent by new between fault and",
            "  rollback; after: the same for requests sent after the rollback",
        ]
        for r in faults:
            if r.memory is not None:
                m = r.memory
                lines.append(
                    f"  memory: new RSS baseline {fmt_mb(m['baseline_bytes'])}, above "
                    f"{GUARD['max_memory_ratio']}x at +{fmt_s(m['over_threshold_s'])}, "
                    f"peak {fmt_mb(m['peak_bytes'])}"
                )
            if r.failures_before_fault:
                lines.append(f"  {r.scenario}: {r.failures_before_fault} failed evaluation(s) "
                             "already in a row before the fault")  # fmt: skip
    for r in results:
        if isinstance(r, HealthyResult):
            lines += [*([""] if lines[-1] else []), *healthy_lines(r)]
    lines += [
        "",
        f"{'load':<11}{'sent/s':>8}{'answ/s':>9}{'sent':>8}{'drop':>6}{'fail':>7}"
        f"{'lag p99':>9}  {'p95 ms leg/new':>13}  {'proxy RSS':>9}  {'new RSS':>9}",
        *[load_row(r) for r in results],
        "  (p95 as the client saw it, before the fault; lag: how late the sender was, ms; "
        "RSS at the end of the scenario)",
    ]
    return "\n".join(lines)


def write_results(
    path: Path, args: argparse.Namespace, machine: dict[str, Any], results: list[Any], table: str
) -> None:
    write_json(path, {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {"rate": args.rate, "warmup": args.warmup, "healthy_seconds":
                     args.healthy_seconds, "hold": args.hold, "guard": GUARD, "stages": STAGES},
        "results": [asdict(r) for r in results],
        "table": table,
    })  # fmt: skip


def on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP act as Ctrl-C: inside asyncio.Runner its SIGINT handler cancels the
    run cleanly (raising from a signal handler inside the event loop would not)."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C even when started in the background (where SIGINT arrives ignored), so that
    # asyncio.Runner installs its own handler, which cancels the run cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    machine = machine_info()
    try:
        results = run_all(args)
    except KeyboardInterrupt:
        print("\ninterrupted; children stopped", file=sys.stderr)
        return 130
    except (BenchError, OSError, httpx.HTTPError, aiohttp.ClientError) as exc:
        print(f"reaction_bench: setup failed: {exc}", file=sys.stderr)
        return 1
    table = report(results, args, machine)
    print("\n" + table + "\n")
    write_results(args.json, args, machine, results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
