"""Two migrations in one gateway, end to end with real processes: both demo backends and
``cutover run`` on free ports, traffic on both prefixes, a fault injected into the new
backend on one prefix only, a real ``kill -9``, and the ``cutover`` CLI as a subprocess.

trade-engine (POST /api/v1/backtests/, 10 -> 50 -> 100 %) and strategies
(/api/v1/strategies, 25 -> 100 %) move to new on their own holds, under one guard that
evaluates every second. Every wait polls with a deadline.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import (
    Backends,
    Faults,
    ProxyPorts,
    ProxyProcess,
    TrafficDriver,
    clean_env,
    cutover_command,
    read_state,
    running_backends,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "e2e-admin-token-migrations-0123"
FAULTS_TOKEN = "e2e-faults-token-migrations-0123"
INTERVAL = 1.0  # the guard's
DEADLINE = 30.0  # for anything the guard decides (normally a few seconds)
TRADE = "trade-engine"
STRATEGIES = "strategies"
TRADE_PREFIX = "/api/v1/backtests/"
STRATEGIES_PATH = "/api/v1/strategies"
# trade-engine reaches 50 % after its 2 s hold; strategies' longer hold keeps it at 25 %
# until well after trade-engine's fault is judged, so it is promoted after that rollback.
TRADE_HOLD = 2.0
STRATEGIES_HOLD = 8.0
# What an operator's action or the guard changes, and a restart must keep.
DURABLE = ("phase", "weight", "stage", "reason", "failure", "history", "baseline_memory_bytes")


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    with running_backends(tmp_path_factory.mktemp("backends"), FAULTS_TOKEN) as running:
        yield running


@pytest.fixture
def faults(backends: Backends) -> Iterator[Faults]:
    backends.faults.clear()
    yield backends.faults
    backends.faults.clear()


def config_for(backends: Backends, ports: ProxyPorts, state_path: Path) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {
            "legacy": {"url": backends.legacy.url, "metrics_url": f"{backends.legacy.url}/metrics"},
            "new": {"url": backends.new.url, "metrics_url": f"{backends.new.url}/metrics"},
        },
        "split": {"sticky": "header:X-User-Id"},
        "migrations": [
            {
                "name": TRADE,
                "match": {"prefix": TRADE_PREFIX, "methods": ["POST"]},
                "from": "legacy",
                "to": "new",
                "rollout": {"stages": [10, 50, 100], "hold": TRADE_HOLD},
            },
            {
                "name": STRATEGIES,
                "match": {"prefix": STRATEGIES_PATH},
                "from": "legacy",
                "to": "new",
                "rollout": {"stages": [25, 100], "hold": STRATEGIES_HOLD},
            },
        ],
        # Latency is not what this file is about: a busy machine must not roll back on it.
        "guard": {
            "interval": INTERVAL,
            "window": 3,
            "min_requests": 10,
            "failures_to_rollback": 2,
            "max_latency_ratio": 10,
        },
        "state": {"path": str(state_path)},
    }


@pytest.fixture
def start_proxy(
    backends: Backends, faults: Faults, tmp_path: Path
) -> Iterator[Callable[[], ProxyProcess]]:
    started: list[ProxyProcess] = []

    def start() -> ProxyProcess:
        ports = ProxyPorts.pick()
        config_path = tmp_path / "cutover.yaml"
        write_config(config_path, config_for(backends, ports, tmp_path / "state.json"))
        proxy = ProxyProcess(tmp_path, config_path, ports, ADMIN_TOKEN)
        proxy.companions = [backends.legacy, backends.new]
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.close()


@pytest.fixture
def traffic() -> Iterator[Callable[..., TrafficDriver]]:
    drivers: list[TrafficDriver] = []

    def start(proxy: ProxyProcess, **options: Any) -> TrafficDriver:
        driver = TrafficDriver(proxy.url, workers=6, **options)
        drivers.append(driver)
        driver.start()
        return driver

    yield start
    for driver in drivers:
        driver.stop()


def wait_migration(
    proxy: ProxyProcess, name: str, what: str, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def check() -> dict[str, dict[str, Any]] | None:
        documents = proxy.migrations()
        return documents if predicate(documents[name]) else None

    try:
        return wait_until(check, DEADLINE, f"{name}: {what}", proxy)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast documents: {proxy.migrations()!r}") from None


def durable(document: dict[str, Any]) -> dict[str, Any]:
    return {key: document[key] for key in DURABLE}


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def served_by(driver: TrafficDriver, moment: float, n: int = 30) -> set[tuple[str, int]]:
    return {(reply.backend, reply.status) for reply in driver.wait_for_replies(moment, n)}


def guard_evaluations(proxy: ProxyProcess, name: str) -> float:
    return proxy.metric("cutover_guard_checks_total", migration=name, check="error_rate")


def test_a_fault_on_one_prefix_rolls_back_that_migration_alone_and_kill_9_keeps_both(
    start_proxy: Callable[[], ProxyProcess],
    faults: Faults,
    traffic: Callable[..., TrafficDriver],
    tmp_path: Path,
) -> None:
    proxy = start_proxy()
    trades = traffic(proxy, rate=60.0)
    reads = traffic(proxy, rate=40.0, method="GET", path=STRATEGIES_PATH)
    documents = wait_migration(proxy, TRADE, "the first promotion", lambda m: m["weight"] == 50)
    waiting = documents[STRATEGIES]
    assert (waiting["phase"], waiting["weight"]) == ("progressing", 25), waiting

    # Every request under trade-engine's prefix fails on new; strategies' requests do not.
    clock_offset = time.time() - time.monotonic()
    injected = time.monotonic()
    faults.set(error_rate=1.0, path_prefix=TRADE_PREFIX)
    first = wait_until(
        lambda: next((r for r in trades.since(injected) if r.status >= 500), None),
        DEADLINE, "a failed backtest from new", proxy,
    )  # fmt: skip
    assert first.backend == "new", first
    seen_at = first.sent + clock_offset

    documents = wait_migration(proxy, TRADE, "a rollback", lambda m: m["phase"] == "rolled_back")
    trade, strategies = documents[TRADE], documents[STRATEGIES]
    rollback = trade["history"][-1]
    assert (rollback["kind"], rollback["actor"]) == ("rollback", "guard"), rollback
    assert trade["failure"]["check"] == "error_rate", trade["failure"]
    assert trade["weight"] == 0, trade
    took = unix(rollback["at"]) - seen_at
    assert took <= 2 * INTERVAL, f"rolled back {took:.2f} s after the fault was seen"
    # strategies was judged on its own requests only: still at its first stage, passing.
    assert (strategies["phase"], strategies["weight"]) == ("progressing", 25), strategies
    assert strategies["checks"]["error_rate"]["result"] == "pass", strategies["checks"]
    assert reads.count(injected)[("new", 200)] > 0
    assert not [key for key in reads.count(injected) if key[1] != 200], reads.count(injected)

    rolled_back = time.monotonic()
    assert served_by(trades, rolled_back) == {("legacy", 200)}
    # ... and strategies goes on to be promoted by the guard, after trade-engine's rollback.
    documents = wait_migration(proxy, STRATEGIES, "promotion", lambda m: m["phase"] == "promoted")
    strategies = documents[STRATEGIES]
    steps = [(t["kind"], t["actor"], t["to_weight"]) for t in strategies["history"]]
    assert steps == [("start", "startup", 25), ("promote", "guard", 100)], steps
    assert unix(strategies["history"][-1]["at"]) > unix(rollback["at"])
    assert durable(documents[TRADE]) == durable(trade), "trade-engine moved after its rollback"

    # The metrics say which migration did what.
    assert proxy.metric("cutover_rollbacks_total", migration=TRADE) == 1
    assert proxy.metric("cutover_rollbacks_total", migration=STRATEGIES) == 0
    assert proxy.metric("cutover_promotions_total", migration=STRATEGIES) == 1
    assert proxy.metric("cutover_guard_checks_total", migration=TRADE, result="fail") >= 2
    assert proxy.metric("cutover_guard_checks_total", migration=STRATEGIES, result="fail") == 0
    assert proxy.metric("cutover_split_weight", migration=TRADE) == 0
    assert proxy.metric("cutover_split_weight", migration=STRATEGIES) == 100

    # kill -9, then a restart over the same state file: both states come back as they were.
    before = documents
    proxy.kill9()
    saved = {name: read_state(tmp_path / "state.json", name) for name in (TRADE, STRATEGIES)}
    assert (saved[TRADE]["phase"], saved[TRADE]["weight"]) == ("rolled_back", 0.0), saved
    assert (saved[STRATEGIES]["phase"], saved[STRATEGIES]["weight"]) == ("promoted", 100.0)
    proxy.restart()
    after = proxy.migrations()
    for name in (TRADE, STRATEGIES):
        assert durable(after[name]) == durable(before[name]), name

    # With traffic on both prefixes for a few evaluations, neither moves, and each
    # migration's requests go where its state says.
    restarted = time.monotonic()
    evaluations = guard_evaluations(proxy, TRADE)
    wait_until(
        lambda: guard_evaluations(proxy, TRADE) >= evaluations + 3, DEADLINE,
        "3 guard evaluations after the restart", proxy,
    )  # fmt: skip
    assert served_by(trades, restarted) == {("legacy", 200)}
    assert served_by(reads, restarted) == {("new", 200)}
    after = proxy.migrations()
    for name in (TRADE, STRATEGIES):
        assert durable(after[name]) == durable(before[name]), name


# --------------------------------------------------------------------------- operating one


def cutover(proxy: ProxyProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cutover_command(), *args],
        env=clean_env(CUTOVER_ADMIN_URL=proxy.admin_url, CUTOVER_ADMIN_TOKEN=ADMIN_TOKEN),
        capture_output=True,
        text=True,
        timeout=30,
    )


def table(stdout: str) -> dict[str, list[str]]:
    """``cutover status``'s lines by migration name: phase, weight, stage."""
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "PHASE", "WEIGHT"], stdout
    return {line.split()[0]: line.split()[1:4] for line in lines[1:] if line.strip()}


def strategies_backends(proxy: ProxyProcess) -> list[str]:
    with httpx.Client(base_url=proxy.url, timeout=5.0, trust_env=False) as client:
        return [
            client.get(STRATEGIES_PATH, headers={"X-User-Id": f"user-{i}"}).headers[
                "x-cutover-backend"
            ]
            for i in range(40)
        ]


def test_the_admin_api_and_the_cli_act_on_one_migration_only(
    start_proxy: Callable[[], ProxyProcess], tmp_path: Path
) -> None:
    # No traffic: no check can pass or fail, so only the operator moves anything.
    proxy = start_proxy()
    status = cutover(proxy, "status")
    assert status.returncode == 0, status.stderr
    assert table(status.stdout) == {
        TRADE: ["progressing", "10%", "1/3"],
        STRATEGIES: ["progressing", "25%", "1/2"],
    }, status.stdout
    start = proxy.migrations()

    paused = cutover(proxy, "pause", STRATEGIES)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.splitlines()[0] == "strategies: paused, 25% to new", paused.stdout
    documents = proxy.migrations()
    assert (documents[STRATEGIES]["phase"], documents[STRATEGIES]["weight"]) == ("paused", 25)
    assert [t["kind"] for t in documents[STRATEGIES]["history"]] == ["start", "pause"]
    assert durable(documents[TRADE]) == durable(start[TRADE])
    routed = strategies_backends(proxy)
    assert set(routed) == {"legacy", "new"}, routed  # 25 % of 40 users on new

    weighed = cutover(proxy, "set-weight", TRADE, "5")
    assert weighed.returncode == 0, weighed.stderr
    assert weighed.stdout.splitlines()[0] == "trade-engine: paused, 5% to new", weighed.stdout
    after = proxy.migrations()
    assert (after[TRADE]["phase"], after[TRADE]["weight"]) == ("paused", 5)
    assert [t["kind"] for t in after[TRADE]["history"]] == ["start", "set_weight"]
    assert durable(after[STRATEGIES]) == durable(documents[STRATEGIES])
    assert proxy.metric("cutover_split_weight", migration=TRADE) == 5
    assert proxy.metric("cutover_split_weight", migration=STRATEGIES) == 25
    assert strategies_backends(proxy) == routed, "strategies' users moved"

    status = cutover(proxy, "status")
    assert status.returncode == 0, status.stderr
    assert table(status.stdout) == {
        TRADE: ["paused", "5%", "-/3"],  # below its first stage
        STRATEGIES: ["paused", "25%", "1/2"],
    }, status.stdout

    # Without a NAME, an action refuses to guess which migration is meant.
    guess = cutover(proxy, "pause")
    assert guess.returncode == 2, (guess.stdout, guess.stderr)
    assert "several migrations are configured (trade-engine, strategies)" in guess.stderr

    # The admin API: one migration's action leaves the other alone.
    resumed = proxy.admin.post(f"/migrations/{STRATEGIES}/resume")
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["phase"], resumed.json()["weight"]) == ("progressing", 25)
    weight = proxy.admin.put(f"/migrations/{TRADE}/weight", json={"weight": 50})
    assert weight.status_code == 200, weight.text
    documents = proxy.migrations()
    assert (documents[TRADE]["phase"], documents[TRADE]["weight"]) == ("paused", 50)
    assert (documents[STRATEGIES]["phase"], documents[STRATEGIES]["weight"]) == ("progressing", 25)
    assert [t["kind"] for t in documents[STRATEGIES]["history"]] == ["start", "pause", "resume"]

    unknown = proxy.admin.post("/migrations/data-layer/pause")
    assert unknown.status_code == 404, unknown.text
    assert unknown.headers["content-type"] == "application/problem+json"
    single = proxy.admin.get("/status")
    assert single.status_code == 409, single.text
    assert "(trade-engine, strategies)" in single.json()["detail"], single.text
    assert {name: durable(doc) for name, doc in proxy.migrations().items()} == {
        name: durable(doc) for name, doc in documents.items()
    }

    saved = {name: read_state(tmp_path / "state.json", name) for name in (TRADE, STRATEGIES)}
    assert (saved[TRADE]["phase"], saved[TRADE]["weight"]) == ("paused", 50.0)
    assert (saved[STRATEGIES]["phase"], saved[STRATEGIES]["weight"]) == ("progressing", 25.0)
