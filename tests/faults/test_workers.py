"""``cutover run --workers 2``: two processes behind the same listeners agree on the
rollout within a guard interval, hash sticky keys the same, and /metrics sums them."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.processes import (
    Faults,
    ProxyPorts,
    ProxyProcess,
    Service,
    TrafficDriver,
    established_to,
    wait_until,
)

pytestmark = pytest.mark.e2e

TOKEN = "workers-admin-token-0123456789"
FAULTS_TOKEN = "workers-faults-token-0123456789"
INTERVAL = 0.5
DEADLINE = 20.0


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyProcess]:
    yield from two_workers(tmp_path)


def two_workers(tmp_path: Path, **sections: Any) -> Iterator[ProxyProcess]:
    legacy, new = Service.legacy(tmp_path), Service.new(tmp_path, FAULTS_TOKEN)
    ports = ProxyPorts.pick()
    config = {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {"legacy": {"url": legacy.url}, "new": {"url": new.url}},
        "split": {"weight": 0, "sticky": "header:X-User-Id"},
        "guard": {"interval": INTERVAL, "window": 3, "min_requests": 10_000},
        "state": {"path": str(tmp_path / "state.json")},
        **sections,
    }
    config_path = tmp_path / "cutover.yaml"
    config_path.write_text(yaml.safe_dump(config))
    proxy = ProxyProcess(tmp_path, config_path, ports, TOKEN)
    proxy.argv += ["--workers", "2"]
    proxy.companions = [legacy, new]
    proxy.new_backend = new  # type: ignore[attr-defined]
    try:
        legacy.start()
        new.start()
        yield proxy.start()
    finally:
        proxy.close()
        legacy.stop()
        new.stop()


def backends_seen(proxy: ProxyProcess, n: int = 60, user: str | None = None) -> Counter[str]:
    """Each request on a new connection, so the kernel spreads them over the workers."""
    seen: Counter[str] = Counter()
    for i in range(n):
        headers = {"X-User-Id": user or f"user-{i}", "Connection": "close"}
        with httpx.Client(trust_env=False, timeout=10) as client:
            response = client.get(f"{proxy.url}/api/v1/strategies", headers=headers)
        seen[response.headers["x-cutover-backend"]] += 1
    return seen


def worker_pids(proxy: ProxyProcess) -> set[str]:
    text = proxy.metrics_text()
    return {line.split('pid="')[1].split('"')[0] for line in text.splitlines()
            if line.startswith("cutover_breaker_state{") and 'pid="' in line}  # fmt: skip


def test_two_workers_share_one_rollout(proxy: ProxyProcess) -> None:
    wait_until(lambda: len(worker_pids(proxy)) == 2 or None, DEADLINE, "two workers", proxy)
    assert backends_seen(proxy) == {"legacy": 60}

    # Whichever worker takes the admin call, both follow within a guard interval.
    assert proxy.admin.put("/split", json={"weight": 100}).status_code == 200
    wait_until(lambda: backends_seen(proxy, 30) == {"new": 30} or None, DEADLINE,
               "both workers at 100 %", proxy)  # fmt: skip
    assert backends_seen(proxy) == {"new": 60}

    assert proxy.admin.post("/rollout/rollback", json={"reason": "test"}).status_code == 200
    wait_until(lambda: backends_seen(proxy, 30) == {"legacy": 30} or None, DEADLINE,
               "both workers rolled back", proxy)  # fmt: skip

    status = proxy.status()
    assert (status["phase"], status["weight"]) == ("rolled_back", 0), status
    kinds = [t["kind"] for t in status["history"]]
    assert kinds == ["start", "set_weight", "rollback"], kinds  # one start, not one per worker


def test_sticky_users_land_alike_on_every_worker(proxy: ProxyProcess) -> None:
    assert proxy.admin.put("/split", json={"weight": 50}).status_code == 200
    wait_until(lambda: len(backends_seen(proxy, 40)) == 2 or None, DEADLINE, "a 50 % split",
               proxy)  # fmt: skip
    for user in ("alice", "bob", "carol", "dave"):
        assert len(backends_seen(proxy, 12, user=user)) == 1, user


def test_metrics_are_the_sum_over_workers(proxy: ProxyProcess) -> None:
    def total() -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in proxy.metrics_text().splitlines()
            if line.startswith("cutover_requests_total{")
        )

    before = total()
    backends_seen(proxy, 80)
    assert total() - before == 80
    assert len(worker_pids(proxy)) == 2


def test_sigterm_drains_every_worker_and_exits_0(proxy: ProxyProcess) -> None:
    faults = Faults(proxy.new_backend.url, FAULTS_TOKEN)  # type: ignore[attr-defined]
    faults.set(extra_latency_ms=1500)
    assert proxy.admin.put("/split", json={"weight": 100}).status_code == 200
    wait_until(lambda: backends_seen(proxy, 10) == {"new": 10} or None, DEADLINE,
               "both workers at 100 %", proxy)  # fmt: skip
    results: list[int] = []

    def slow_request(i: int) -> None:
        with httpx.Client(trust_env=False, timeout=15) as client:
            response = client.post(
                f"{proxy.url}/api/v1/backtests/bt-{i}/execute",
                json={"strategy": "momentum"},
                headers={"X-User-Id": f"user-{i}", "Connection": "close"},
            )
            results.append(response.status_code)

    threads = [threading.Thread(target=slow_request, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    # In flight: the workers hold a connection to new for each (new answers after 1.5 s).
    new_port = proxy.new_backend.port  # type: ignore[attr-defined]

    def in_flight() -> bool | None:
        held = sum(established_to(int(pid), new_port) for pid in worker_pids(proxy))
        return held >= 6 or None

    wait_until(in_flight, DEADLINE, "6 requests in flight", proxy)
    proxy.signal_group(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=15)
    assert results == [200] * 6, results
    assert proxy.popen is not None
    assert proxy.popen.wait(timeout=15) == 0
    faults.clear()
    faults.close()


def test_a_dead_workers_series_leave_metrics(proxy: ProxyProcess) -> None:
    pids = wait_until(lambda: len(worker_pids(proxy)) == 2 and worker_pids(proxy), DEADLINE,
                      "two workers", proxy)  # fmt: skip
    dead = sorted(pids)[0]
    os.kill(int(dead), signal.SIGKILL)
    # The supervisor starts a replacement; the dead one's per-process series must go.
    wait_until(lambda: (found := worker_pids(proxy)) and len(found) == 2 and dead not in found,
               DEADLINE, f"worker {dead}'s series to leave /metrics", proxy)  # fmt: skip


def statuses(proxy: ProxyProcess, n: int) -> list[tuple[float, dict[str, Any]]]:
    """``GET /status`` n times, each on a new connection (so both workers answer)."""
    answers = []
    for _ in range(n):
        with httpx.Client(trust_env=False, timeout=10, headers=proxy.admin.headers) as client:
            response = client.get(f"{proxy.admin_url}/status", headers={"Connection": "close"})
        assert response.status_code == 200, response.text
        answers.append((time.monotonic(), response.json()))
    return answers


def test_every_worker_shows_the_same_checks_and_hold(tmp_path: Path) -> None:
    """Only the guard's leader evaluates; whichever worker answers /status shows its checks
    and how long they have passed (before, the other worker showed none, and no hold)."""
    workers = two_workers(
        tmp_path,
        split={"weight": 50, "sticky": "header:X-User-Id"},
        rollout={"stages": [50, 100], "hold": 600},
        guard={"interval": INTERVAL, "window": 3, "min_requests": 5, "max_latency_ratio": 50},
    )
    proxy = next(workers)
    try:
        with TrafficDriver(proxy.url, rate=60, workers=4):
            wait_until(lambda: all(s["healthy_for"] for _, s in statuses(proxy, 6)), DEADLINE,
                       "every check to pass", proxy)  # fmt: skip
            answers = statuses(proxy, 30)
        checks = {name: check["result"] for name, check in answers[0][1]["checks"].items()}
        assert checks == {"error_rate": "pass", "latency": "pass"}, answers[0][1]["checks"]
        for _, status in answers:
            assert {n: c["result"] for n, c in status["checks"].items()} == checks, status
        # healthy_for grows with time alike in both workers: it began at one moment.
        began = [at - status["healthy_for"] for at, status in answers]
        assert max(began) - min(began) < 3 * INTERVAL, began
    finally:
        workers.close()
