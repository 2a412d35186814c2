"""``cutover run --workers 2``: two processes behind the same listeners agree on the
rollout within a guard interval, hash sticky keys the same, and /metrics sums them."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from processes import Faults, ProxyPorts, ProxyProcess, Service, established_to, wait_until

pytestmark = pytest.mark.e2e

TOKEN = "workers-admin-token-0123456789"
FAULTS_TOKEN = "workers-faults-token-0123456789"
INTERVAL = 0.5
DEADLINE = 20.0


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyProcess]:
    legacy, new = Service.legacy(tmp_path), Service.new(tmp_path, FAULTS_TOKEN)
    ports = ProxyPorts.pick()
    config = {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {"legacy": {"url": legacy.url}, "new": {"url": new.url}},
        "split": {"weight": 0, "sticky": "header:X-User-Id"},
        "guard": {"interval": INTERVAL, "window": 3, "min_requests": 10_000},
        "state": {"path": str(tmp_path / "state.json")},
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
