"""Graceful drain (issue #6): on SIGTERM/SIGINT ``cutover run`` stops accepting, lets the
requests in flight finish (up to ``shutdown.grace``), flushes, and exits 0; a restart under
steady load loses no request that was accepted.

Real processes (tests/processes.py): both demo backends, shared by the module, and a
``cutover run`` per test. The new backend's ``extra_latency_ms`` fault makes requests slow.
"In flight" is established, not guessed: the proxy process holds one established TCP
connection to the new backend per request it is forwarding (read from /proc; the config
has no ``metrics_url``, so nothing else in the proxy talks to that port).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.processes import (
    Backends,
    ProxyPorts,
    ProxyProcess,
    established_to,
    running_backends,
    wait_until,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="reads the proxy's sockets from /proc"
    ),
]

ADMIN_TOKEN = "drain-admin-token-0123456789"
FAULTS_TOKEN = "drain-faults-token-0123456789"
EXECUTE = "/api/v1/backtests/bt-{}/execute"
BODY = {"strategy": "momentum", "symbol": "AAPL"}
IN_FLIGHT_DEADLINE = 5.0  # for requests to reach the backend (normally < 0.1 s)
EXIT_MARGIN = 3.0  # process teardown after the drain (normally ~0.2 s)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    """Both demo backends, shared by the module."""
    with running_backends(tmp_path_factory.mktemp("backends"), FAULTS_TOKEN) as running:
        yield running


@dataclass
class Harness:
    backends: Backends
    tmp_path: Path
    started: list[ProxyProcess] = field(default_factory=list)

    @property
    def state_path(self) -> Path:
        return self.tmp_path / "state.json"

    def start(self, **sections: Any) -> ProxyProcess:
        """``cutover run`` at log level info (the drain's log lines are info)."""
        ports = ProxyPorts.pick()
        config: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": ports.listen},
            "admin": {"host": "127.0.0.1", "port": ports.admin},
            # No metrics_url: the proxy's only connections to new are forwarded requests.
            "backends": {
                "legacy": {"url": self.backends.legacy.url},
                "new": {"url": self.backends.new.url},
            },
            "split": {"weight": 100},
            # The guard never has enough requests to judge: it stays out of the way.
            "guard": {"interval": 0.5, "min_requests": 10**9},
            "state": {"path": str(self.state_path)},
            **sections,
        }
        path = self.tmp_path / "cutover.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        proxy = ProxyProcess(self.tmp_path, path, ports, ADMIN_TOKEN)
        assert proxy.argv[-2:] == ["--log-level", "warning"], proxy.argv
        proxy.argv[-1] = "info"
        proxy.companions = [self.backends.legacy, self.backends.new]
        self.started.append(proxy)
        return proxy.start()


@pytest.fixture
def harness(backends: Backends, tmp_path: Path) -> Iterator[Harness]:
    backends.faults.clear()
    harness = Harness(backends, tmp_path)
    try:
        yield harness
    finally:
        for proxy in harness.started:
            proxy.close()
        backends.faults.clear()


# --------------------------------------------------------------------------- helpers


def refused(port: int) -> bool:
    """True if a connection to ``port`` is refused; one that is accepted is closed again."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


@dataclass
class Call:
    status: int | None = None  # None: no response (see error)
    backend: str | None = None
    error: str | None = None
    done_at: float | None = None  # time.monotonic()


def call_in_thread(url: str, number: int) -> tuple[threading.Thread, Call]:
    call = Call()

    def run() -> None:
        try:
            with httpx.Client(timeout=15.0, trust_env=False) as client:
                response = client.post(f"{url}{EXECUTE.format(number)}", json=BODY)
            call.status = response.status_code
            call.backend = response.headers.get("x-cutover-backend")
        except httpx.HTTPError as exc:
            call.error = repr(exc)
        call.done_at = time.monotonic()

    thread = threading.Thread(target=run, name=f"slow-{number}", daemon=True)
    thread.start()
    return thread, call


def terminate(proxy: ProxyProcess, sig: int, within: float) -> tuple[int, float]:
    """Send ``sig`` to the proxy; its exit code and the seconds it took to exit."""
    assert proxy.popen is not None
    sent = time.monotonic()
    proxy.popen.send_signal(sig)
    popen = proxy.popen
    wait_until(lambda: popen.poll() is not None, within, f"the proxy to exit after {sig!r}", proxy)
    return popen.returncode, time.monotonic() - sent


def in_flight(proxy: ProxyProcess, backends: Backends, n: int) -> None:
    wait_until(
        lambda: established_to(proxy.pid, backends.new.port) >= n,
        IN_FLIGHT_DEADLINE,
        f"{n} requests in flight to new",
        proxy,
    )


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_requests_in_flight_finish_and_new_connections_are_refused(
    harness: Harness, sig: signal.Signals
) -> None:
    """5 requests held 1.5 s by the new backend are in flight when the signal comes: the
    proxy and admin ports refuse new connections while they are still running, all 5 get
    their 200 from new, the process exits 0 with no traceback, logs the drain, and flushes
    (the shadow log ends with its totals line; the state file is intact)."""
    shadow_log = harness.tmp_path / "shadow.jsonl"
    proxy = harness.start(
        routes=[{"prefix": "/api/v1/strategies", "shadow": {"sample": 1.0}}],
        shadow={"log_path": str(shadow_log)},
    )
    state_before = harness.state_path.read_bytes()
    harness.backends.faults.set(extra_latency_ms=1500)
    calls = [call_in_thread(proxy.url, i) for i in range(5)]
    in_flight(proxy, harness.backends, 5)

    assert proxy.popen is not None
    sent = time.monotonic()
    proxy.popen.send_signal(sig)
    wait_until(lambda: refused(proxy.ports.listen), 2.0, "the proxy port to refuse", proxy)
    # Refusing while draining, not because everything is over already:
    assert proxy.running(), proxy.describe()
    assert not any(call.done_at for _, call in calls), [call for _, call in calls]
    assert refused(proxy.ports.admin)

    popen = proxy.popen
    wait_until(lambda: popen.poll() is not None, 10.0, "the proxy to exit", proxy)
    took = time.monotonic() - sent
    assert popen.returncode == 0, proxy.describe()
    # The requests had 1.5 s to go at most; the grace (30 s by default) did not run out.
    assert took < 1.5 + EXIT_MARGIN, f"exited {took:.2f}s after the signal"
    for thread, _ in calls:
        thread.join(5.0)
    assert [(call.status, call.backend) for _, call in calls] == [(200, "new")] * 5, calls

    stderr = proxy.stderr()
    assert "Traceback" not in stderr, stderr
    assert "draining: stopped accepting connections; 5 request(s) in flight" in stderr, stderr
    assert "drained 5 request(s) in " in stderr, stderr
    last = json.loads(shadow_log.read_text(encoding="utf-8").splitlines()[-1])
    assert last["kind"] == "totals", last
    assert harness.state_path.read_bytes() == state_before


def test_the_drain_log_times_the_fast_paths_requests(harness: Harness) -> None:
    """3 requests the fast path carries (nothing sends them to the full path), held 1.5 s
    by new when SIGTERM comes: the drain's log counts them and times them, to the last one
    answered, as it times the full path's requests."""
    proxy = harness.start()
    harness.backends.faults.set(extra_latency_ms=1500)
    calls = [call_in_thread(proxy.url, i) for i in range(3)]
    in_flight(proxy, harness.backends, 3)

    sent = time.monotonic()
    code, _ = terminate(proxy, signal.SIGTERM, within=1.5 + EXIT_MARGIN + 2.0)
    assert code == 0, proxy.describe()
    for thread, _ in calls:
        thread.join(5.0)
    assert [(call.status, call.backend) for _, call in calls] == [(200, "new")] * 3, calls
    answered = max(call.done_at or 0.0 for _, call in calls) - sent
    stderr = proxy.stderr()
    assert "draining: stopped accepting connections; 3 request(s) in flight" in stderr, stderr
    drained = re.search(r"drained 3 request\(s\) in ([\d.]+)s", stderr)
    assert drained, stderr
    # From the drain's start to the last answer: after the signal, before the client had it.
    assert 1.0 <= float(drained[1]) <= answered + 0.05, (drained[0], answered)


def test_grace_expiry_cuts_the_request_and_exits_0(harness: Harness) -> None:
    """With ``shutdown.grace: 1`` and a request the backend holds 5 s, SIGTERM ends the
    process about 1 s later with exit code 0. The client does not hang: uvicorn cancels the
    request and, as no response had started, answers ``500 Internal Server Error``
    (text/plain, Connection: close). A response already streaming would be cut instead."""
    proxy = harness.start(shutdown={"grace": 1})
    harness.backends.faults.set(extra_latency_ms=5000)
    started = time.monotonic()
    thread, call = call_in_thread(proxy.url, 1)
    in_flight(proxy, harness.backends, 1)

    code, took = terminate(proxy, signal.SIGTERM, within=1.0 + EXIT_MARGIN + 2.0)
    assert code == 0, proxy.describe()
    assert took < 1.0 + EXIT_MARGIN, f"exited {took:.2f}s after SIGTERM"
    thread.join(5.0)
    assert call.done_at is not None, "the client is still waiting"
    assert call.done_at - started < 5.0, "the client waited for the backend's answer"
    assert (call.status, call.error) == (500, None), call
    stderr = proxy.stderr()
    assert "Traceback" not in stderr, stderr
    assert "1 cut off when the 1s grace ran out" in stderr, stderr


@dataclass
class Attempt:
    sent: float
    outcome: str  # "ok" | "refused" | "lost"
    detail: str


class SteadyLoad:
    """``workers`` threads sending, together, about ``rate`` POSTs/s through the proxy,
    each on a fresh connection (no keep-alive), and retrying a request only when its
    connection was refused.

    A request counts as *accepted* when its TCP connection was established (connect()
    succeeded) and the request was written to it. Outcomes: ``refused`` (connect() failed:
    nothing was accepted, the request is retried), ``ok`` (any response below 500) and
    ``lost`` (an accepted request that got a 5xx, or no response: reset, closed, timeout).

    Fresh connections because on a reused keep-alive connection HTTP/1.1 has a race no
    server can close: a request written just as the server closes the idle connection is
    neither refused nor read, and only the client may retry it (if it is idempotent).
    What the drain does close (proxy/ops/server.py DrainingServer): connections waiting in the
    listen backlog are accepted before the listener closes (closing it would reset them),
    and connections accepted without their request yet get up to 1 s to send it. What is
    left: a handshake that completes in the microseconds between the last look at the
    backlog and the close is reset.
    """

    def __init__(self, url: str, *, rate: float = 100.0, workers: int = 10) -> None:
        self.url = url
        self.period = workers / rate
        self.workers = workers
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"steady-{i}", daemon=True)
            for i in range(workers)
        ]

    def __enter__(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(20.0)

    def _work(self, index: int) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        next_at = time.monotonic() + self.period * index / self.workers
        number = index
        with httpx.Client(timeout=10.0, trust_env=False, limits=limits) as client:
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                next_at = max(next_at + self.period, time.monotonic())
                number += self.workers
                while not self._stop.is_set() and self._attempt(client, number) == "refused":
                    self._stop.wait(0.02)

    def _attempt(self, client: httpx.Client, number: int) -> str:
        sent = time.monotonic()
        try:
            response = client.post(f"{self.url}{EXECUTE.format(number)}", json=BODY)
        except httpx.ConnectError as exc:
            outcome, detail = "refused", repr(exc)
        except httpx.HTTPError as exc:
            outcome, detail = "lost", repr(exc)
        else:
            outcome = "ok" if response.status_code < 500 else "lost"
            detail = f"{response.status_code} {response.text[:200]}"
        with self._lock:
            self.attempts.append(Attempt(sent, outcome, detail))
        return outcome

    def count(self, outcome: str, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for a in self.attempts if a.outcome == outcome and a.sent >= since)

    def lost(self) -> list[Attempt]:
        with self._lock:
            return [a for a in self.attempts if a.outcome == "lost"]


def test_restart_under_steady_load_loses_no_accepted_request(harness: Harness) -> None:
    """~100 requests/s (see SteadyLoad for what counts as accepted; new answers after
    200 ms, so about a dozen requests are in flight at any moment) while the proxy is sent
    SIGTERM and a new one is started on the same ports, config and state as soon as the
    old one has exited: the old one drained requests (its log says how many, at least
    one), no accepted request ends in a 5xx or without a response, and the rollout's phase
    and weight (promoted by the operator to the second stage) survive the restart."""
    proxy = harness.start(rollout={"stages": [20, 60, 100], "hold": 3600}, split={"weight": 0})
    response = proxy.action("promote")
    assert response.status_code == 200, response.text
    before = proxy.status()
    assert (before["phase"], before["weight"]) == ("progressing", 60), before
    harness.backends.faults.set(extra_latency_ms=200)

    with SteadyLoad(proxy.url, rate=100.0, workers=30) as load:
        wait_until(lambda: load.count("ok") >= 100, 10.0, "100 requests before the restart")
        code, _ = terminate(proxy, signal.SIGTERM, within=10.0)
        assert code == 0, proxy.describe()
        old_stderr = proxy.stderr()
        proxy.restart()
        back = time.monotonic()
        wait_until(
            lambda: load.count("ok", since=back) >= 100, 10.0, "100 requests after the restart"
        )
    counts = {outcome: load.count(outcome) for outcome in ("ok", "refused", "lost")}
    lost = load.lost()
    assert lost == [], f"{len(lost)} accepted requests lost ({counts}): {lost[:5]}"
    drained = re.search(r"draining: stopped accepting connections; (\d+) request", old_stderr)
    assert drained and int(drained[1]) >= 1, old_stderr
    assert re.search(rf"drained {drained[1]} request\(s\)", old_stderr), old_stderr
    after = proxy.status()
    assert (after["phase"], after["weight"]) == ("progressing", 60), after
    for stderr in (old_stderr, proxy.stderr()):
        assert "Traceback" not in stderr, stderr
