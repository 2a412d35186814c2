"""End to end with real processes: both demo backends and ``cutover run`` as children in
their own process groups, real traffic through the proxy, faults injected into the new
backend, and real ``kill -9``s. The guard runs on a fast config (0.5 s interval, 3 s window,
2 s hold) so a full 10 → 50 → 100 rollout takes a few seconds.

Every wait polls with a deadline; the deadlines are generous (the machine may be busy),
the normal path takes a fraction of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

ADMIN_TOKEN = "e2e-admin-token-0123456789"
FAULTS_TOKEN = "e2e-faults-token-0123456789"
GUARD_DEADLINE = 30.0  # for anything the guard has to decide (normally 1-6 s)
RELOAD_DEADLINE = 15.0  # for a config file change to be noticed (normally < 0.5 s)
INTERVAL = 0.5
HOLD = 2.0
DEPRECATED_AT = "2026-12-01T00:00:00Z"
DEPRECATION_VALUE = "@1796083200"  # RFC 9745: 2026-12-01T00:00:00Z as Unix seconds


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    """Both demo backends, shared by the module."""
    with running_backends(tmp_path_factory.mktemp("backends"), FAULTS_TOKEN) as running:
        yield running


@pytest.fixture
def faults(backends: Backends) -> Iterator[Faults]:
    backends.faults.clear()
    yield backends.faults
    snapshot = backends.faults.clear()
    assert snapshot["leaked_bytes"] == 0, snapshot


def config_for(
    backends: Backends, ports: ProxyPorts, state_path: Path, **sections: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {
            "legacy": {"url": backends.legacy.url, "metrics_url": f"{backends.legacy.url}/metrics"},
            "new": {"url": backends.new.url, "metrics_url": f"{backends.new.url}/metrics"},
        },
        "split": {"weight": 10, "sticky": "header:X-User-Id"},
        "rollout": {"stages": [10, 50, 100], "hold": HOLD},
        "guard": {"interval": INTERVAL, "window": 3, "min_requests": 20, "failures_to_rollback": 2},
        "state": {"path": str(state_path)},
    }
    config.update(sections)
    return config


@dataclass
class Cutover:
    """What a test needs to start (and restart) proxies over the shared backends."""

    backends: Backends
    tmp_path: Path
    started: list[ProxyProcess]

    @property
    def state_path(self) -> Path:
        return self.tmp_path / "state.json"

    @property
    def config_path(self) -> Path:
        return self.tmp_path / "cutover.yaml"

    def config(self, ports: ProxyPorts, **sections: Any) -> dict[str, Any]:
        return config_for(self.backends, ports, self.state_path, **sections)

    def prepare(self, **sections: Any) -> ProxyProcess:
        """Write the config and build the proxy process, not started yet."""
        ports = ProxyPorts.pick()
        write_config(self.config_path, self.config(ports, **sections))
        proxy = ProxyProcess(self.tmp_path, self.config_path, ports, ADMIN_TOKEN)
        proxy.companions = [self.backends.legacy, self.backends.new]
        self.started.append(proxy)
        return proxy

    def start(self, **sections: Any) -> ProxyProcess:
        return self.prepare(**sections).start()


@pytest.fixture
def cutover(backends: Backends, faults: Faults, tmp_path: Path) -> Iterator[Cutover]:
    harness = Cutover(backends, tmp_path, [])
    yield harness
    for proxy in harness.started:
        proxy.close()


@pytest.fixture
def traffic() -> Iterator[Callable[[ProxyProcess], TrafficDriver]]:
    drivers: list[TrafficDriver] = []

    def start(proxy: ProxyProcess) -> TrafficDriver:
        driver = TrafficDriver(proxy.url)
        drivers.append(driver)
        driver.start()
        return driver

    yield start
    for driver in drivers:
        driver.stop()


# --------------------------------------------------------------------------- helpers


def wait_status(
    proxy: ProxyProcess,
    what: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = GUARD_DEADLINE,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = proxy.status()
        return status if predicate(status) else None

    try:
        return wait_until(check, timeout, what, proxy)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast status: {proxy.status()!r}") from None


def check_passed(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status["checks"].get(name, {}).get("result") == "pass"


def rolled_back(status: dict[str, Any]) -> bool:
    return status["phase"] == "rolled_back"


def guard_evaluations(proxy: ProxyProcess) -> float:
    return proxy.metric("cutover_guard_checks_total", check="error_rate")


def assert_all_legacy_after(driver: TrafficDriver, moment: float, n: int = 60) -> None:
    replies = driver.wait_for_replies(moment, n)
    served = {(reply.backend, reply.status) for reply in replies}
    assert served == {("legacy", 200)}, f"after the rollback, replies were {served}"


def assert_guard_rollback(
    status: dict[str, Any], state_path: Path, check: str, threshold: float
) -> None:
    """The status and the state file on disk both record a guard rollback by ``check``."""
    assert status["phase"] == "rolled_back", status
    assert status["weight"] == 0, status
    failure = status["failure"]
    assert failure["check"] == check, failure
    assert failure["result"] == "fail", failure
    assert failure["threshold"] == pytest.approx(threshold), failure
    assert failure["value"] > threshold, failure
    assert status["reason"].startswith(check), status["reason"]

    saved = read_state(state_path)
    assert (saved["phase"], saved["weight"]) == ("rolled_back", 0.0), saved
    assert saved["failure"]["check"] == check, saved["failure"]
    last = saved["history"][-1]
    assert last["kind"] == "rollback", last
    assert last["actor"] == "guard", last
    assert last["to_phase"] == "rolled_back", last
    assert last["to_weight"] == 0, last
    assert last["failure"]["check"] == check, last


# --------------------------------------------------------------------------- the guard


def test_healthy_rollout_promotes_through_every_stage(
    cutover: Cutover, traffic: Callable[[ProxyProcess], TrafficDriver]
) -> None:
    proxy = cutover.start()
    status = proxy.status()
    assert (status["phase"], status["weight"]) == ("progressing", 10), status

    driver = traffic(proxy)
    final = wait_status(proxy, "the rollout to be promoted", lambda s: s["phase"] == "promoted")

    assert final["weight"] == 100, final
    steps = [(t["kind"], t["actor"], t["to_phase"], t["to_weight"]) for t in final["history"]]
    assert steps == [
        ("start", "startup", "progressing", 10),
        ("promote", "guard", "progressing", 50),
        ("promote", "guard", "promoted", 100),
    ], steps
    assert final["failure"] is None, final

    # At 100 % every user is on new.
    moment = time.monotonic()
    replies = driver.wait_for_replies(moment, 50)
    assert {(r.backend, r.status) for r in replies} == {("new", 200)}

    driver.stop()
    counts = driver.count()
    assert counts[("legacy", 200)] > 0 and counts[("new", 200)] > 0, counts
    bad = {key: n for key, n in counts.items() if key[1] >= 500 or key[1] == 0}
    assert not bad, f"the driver saw failures during a healthy rollout: {bad}"

    saved = read_state(cutover.state_path)
    assert (saved["phase"], saved["weight"]) == ("promoted", 100), saved
    assert not any(t["kind"] == "rollback" for t in saved["history"]), saved["history"]
    assert saved["baseline_memory_bytes"] > 0, saved


def test_error_rate_rolls_back_and_the_rollback_survives_kill_9(
    cutover: Cutover, faults: Faults, traffic: Callable[[ProxyProcess], TrafficDriver]
) -> None:
    proxy = cutover.start()
    driver = traffic(proxy)
    wait_status(proxy, "a passing error-rate check", check_passed("error_rate"))

    faults.set(error_rate=0.5)
    status = wait_status(proxy, "a rollback", rolled_back)
    observed = time.monotonic()
    assert_guard_rollback(status, cutover.state_path, "error_rate", threshold=0.05)
    assert_all_legacy_after(driver, observed)
    history = status["history"]

    # kill -9 (the whole process group) and start again over the same state file.
    proxy.kill9()
    assert proxy.popen is not None and proxy.popen.returncode == -signal.SIGKILL
    proxy.restart()
    status = proxy.status()
    assert (status["phase"], status["weight"]) == ("rolled_back", 0), status
    assert status["failure"]["check"] == "error_rate", status
    assert status["history"] == history, "the history must survive the restart unchanged"

    # With traffic flowing for several guard evaluations it stays rolled back: nobody
    # re-promotes new by themselves, and every request goes to legacy.
    restarted = time.monotonic()
    before = guard_evaluations(proxy)
    wait_until(lambda: guard_evaluations(proxy) >= before + 6, 15.0, "6 guard evaluations", proxy)
    status = proxy.status()
    assert (status["phase"], status["weight"]) == ("rolled_back", 0), status
    assert status["history"] == history, status["history"]
    assert_all_legacy_after(driver, restarted)

    # The operator fixes new and restarts the rollout: progressing at the first stage.
    faults.clear()
    response = proxy.action("restart")
    assert response.status_code == 200, response.text
    restarted_status = response.json()
    assert (restarted_status["phase"], restarted_status["weight"]) == ("progressing", 10)
    assert restarted_status["failure"] is None, restarted_status
    last = restarted_status["history"][-1]
    assert (last["kind"], last["actor"]) == ("restart", "operator"), last
    saved = read_state(cutover.state_path)
    assert (saved["phase"], saved["weight"]) == ("progressing", 10.0), saved
    status = proxy.status()
    assert (status["phase"], status["weight"]) == ("progressing", 10), status


def test_latency_fault_rolls_back(
    cutover: Cutover, faults: Faults, traffic: Callable[[ProxyProcess], TrafficDriver]
) -> None:
    proxy = cutover.start()
    driver = traffic(proxy)
    wait_status(proxy, "a passing latency check", check_passed("latency"))

    faults.set(extra_latency_ms=200)
    status = wait_status(proxy, "a rollback", rolled_back)
    observed = time.monotonic()
    assert_guard_rollback(status, cutover.state_path, "latency", threshold=2.0)
    assert_all_legacy_after(driver, observed)


def test_memory_fault_rolls_back(
    cutover: Cutover, faults: Faults, traffic: Callable[[ProxyProcess], TrafficDriver]
) -> None:
    proxy = cutover.start()
    driver = traffic(proxy)
    # The baseline is new's memory at the first evaluation; leak only after it is taken.
    status = wait_status(proxy, "a passing memory check", check_passed("memory"))
    assert status["baseline_memory_bytes"] > 0, status

    faults.set(leak_kb_per_request=2048)
    status = wait_status(proxy, "a rollback", rolled_back)
    assert_guard_rollback(status, cutover.state_path, "memory", threshold=1.5)
    driver.stop()
    snapshot = faults.clear()
    assert snapshot["leaked_bytes"] == 0, snapshot


def test_kill_9_mid_rollout_resumes_at_the_same_stage(
    cutover: Cutover, traffic: Callable[[ProxyProcess], TrafficDriver]
) -> None:
    proxy = cutover.start()
    driver = traffic(proxy)
    status = wait_status(proxy, "the first promotion", lambda s: s["weight"] == 50)
    # Kill at once: the next promotion is a whole hold (2 s) of passing checks away.
    proxy.kill9()
    driver.stop()
    assert status["phase"] == "progressing", status
    history = status["history"]
    assert [(t["kind"], t["to_weight"]) for t in history] == [("start", 10), ("promote", 50)]

    saved = read_state(cutover.state_path)
    assert (saved["phase"], saved["weight"]) == ("progressing", 50.0), saved

    proxy.restart()
    status = proxy.status()
    assert (status["phase"], status["weight"]) == ("progressing", 50), status
    assert status["history"] == history, "the history must survive the restart unchanged"
    assert status["baseline_memory_bytes"] == saved["baseline_memory_bytes"] > 0, status

    # The restarted proxy has seen no traffic yet, so no check can pass: it waits at 50.
    # With traffic, the guard carries on from 50 (never back through 10) to the end.
    traffic(proxy)
    final = wait_status(proxy, "the rollout to be promoted", lambda s: s["phase"] == "promoted")
    after = final["history"][len(history) :]
    assert [(t["kind"], t["to_weight"]) for t in after] == [("promote", 100)], final["history"]


@contextlib.contextmanager
def immutable(directory: Path) -> Iterator[None]:
    """``chattr +i``: nothing can be created, renamed or removed in ``directory``, even by
    root (tests run as root on CI, where chmod stops nothing)."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr is not installed: no way to make a directory unwritable for root")
    done = subprocess.run([chattr, "+i", str(directory)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def test_an_action_the_state_directory_refuses_is_a_503_and_changes_nothing(
    cutover: Cutover,
) -> None:
    state_dir = cutover.tmp_path / "state"
    state_dir.mkdir()
    state_path = state_dir / "state.json"
    proxy = cutover.start(state={"path": str(state_path)})
    # The guard saves new's memory baseline at its first evaluation: after that, only an
    # action changes the file.
    wait_status(proxy, "the memory baseline", lambda s: s["baseline_memory_bytes"])
    saved = state_path.read_bytes()

    def backends_seen() -> set[str]:
        with httpx.Client(base_url=proxy.url, timeout=5.0, trust_env=False) as client:
            return {
                client.get("/api/v1/strategies", headers={"X-User-Id": f"user-{i}"}).headers[
                    "x-cutover-backend"
                ]
                for i in range(40)
            }

    assert backends_seen() == {"legacy", "new"}  # 10 % of 40 users on new
    with immutable(state_dir):
        response = proxy.admin.put("/split", json={"weight": 100})
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "the rollout is unchanged" in response.json()["detail"], response.text
        status = proxy.status()
        assert (status["phase"], status["weight"]) == ("progressing", 10), status
        assert [t["kind"] for t in status["history"]] == ["start"]
        assert backends_seen() == {"legacy", "new"}  # the splitter did not move either
        assert state_path.read_bytes() == saved
    assert "could not save the rollout state" in proxy.stderr()
    assert "Traceback" not in proxy.stderr()
    # Once the directory can be written again, the same action goes through.
    assert proxy.admin.put("/split", json={"weight": 100}).status_code == 200
    assert read_state(state_path)["weight"] == 100.0
    assert backends_seen() == {"new"}


def test_corrupt_state_file_refuses_to_start_before_binding(cutover: Cutover) -> None:
    proxy = cutover.prepare()
    cutover.state_path.write_text("{not json", encoding="utf-8")
    # Hold both of the proxy's ports: were it to bind before reading the state, it would
    # fail with "cannot listen" (exit 1) instead of refusing the state (exit 2).
    holders = []
    for port in (proxy.ports.listen, proxy.ports.admin):
        holder = socket.create_server(("127.0.0.1", port))
        holders.append(holder)
    try:
        proxy.spawn()
        assert proxy.popen is not None
        try:
            code = proxy.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"cutover run kept running over a corrupt state file\n{proxy.describe()}")
    finally:
        for holder in holders:
            holder.close()
    stderr = proxy.stderr()
    assert code == 2, proxy.describe()
    assert stderr.startswith("state: "), stderr
    assert str(cutover.state_path) in stderr and "not valid JSON" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert "cannot listen" not in stderr, stderr
    assert cutover.state_path.read_text(encoding="utf-8") == "{not json", "state overwritten"


# --------------------------------------------------------------------------- operations


def test_config_reload_keeps_serving_through_an_invalid_config(cutover: Cutover) -> None:
    proxy = cutover.start()
    before = proxy.status()
    failures = "cutover_config_reload_failures_total"
    assert proxy.metric(failures) == 0.0

    with httpx.Client(base_url=proxy.url, timeout=5.0, trust_env=False) as client:

        def legacy_reply() -> httpx.Response:
            response = client.get("/api/v1/strategies", headers={"X-Cutover-Backend": "legacy"})
            assert response.status_code == 200, response.text
            assert response.headers["x-cutover-backend"] == "legacy"
            return response

        assert "deprecation" not in legacy_reply().headers
        config = cutover.config(proxy.ports)

        # An invalid file: refused, counted, and the running config stays.
        write_config(cutover.config_path, {**config, "split": {"weight": 500}})
        wait_until(lambda: proxy.metric(failures) == 1.0, RELOAD_DEADLINE, "reload failure", proxy)
        legacy_reply()
        after = proxy.status()
        keys = ("phase", "weight", "history", "failure")
        assert {k: after[k] for k in keys} == {k: before[k] for k in keys}

        # SIGHUP re-reads the (still invalid) file: refused and counted again.
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: proxy.metric(failures) == 2.0, RELOAD_DEADLINE, "SIGHUP reload", proxy)
        assert proxy.running(), proxy.describe()
        legacy_reply()

        # A valid file that adds deprecation headers: legacy replies gain them.
        valid = {**config, "deprecation": {"deprecated_at": DEPRECATED_AT}}
        write_config(cutover.config_path, valid)

        def deprecated_reply() -> httpx.Response | None:
            response = legacy_reply()
            return response if "deprecation" in response.headers else None

        reply = wait_until(
            deprecated_reply,
            RELOAD_DEADLINE,
            "the Deprecation header after a valid reload",
            proxy,
        )
        assert reply.headers["deprecation"] == DEPRECATION_VALUE
        forced_new = client.get("/api/v1/strategies", headers={"X-Cutover-Backend": "new"})
        assert forced_new.status_code == 200
        assert "deprecation" not in forced_new.headers
    assert proxy.metric(failures) == 2.0
    status = proxy.status()
    assert (status["phase"], status["weight"]) == (before["phase"], before["weight"]), status


def test_admin_api_needs_the_token_and_the_cli_uses_it(cutover: Cutover) -> None:
    proxy = cutover.start()
    with httpx.Client(base_url=proxy.admin_url, timeout=5.0, trust_env=False) as anonymous:
        for method, path, headers in [
            ("GET", "/status", {}),
            ("GET", "/status", {"Authorization": "Bearer wrong-token"}),
            ("GET", "/status", {"Authorization": ADMIN_TOKEN}),  # no scheme
            ("POST", "/rollout/pause", {}),
            ("POST", "/rollout/rollback", {"Authorization": "Bearer wrong-token"}),
            ("PUT", "/split", {}),
        ]:
            response = anonymous.request(method, path, headers=headers, json={"weight": 100})
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["status"] == 401, response.text
            assert response.headers["www-authenticate"].startswith("Bearer")
        for path in ("/metrics", "/healthz", "/readyz"):
            response = anonymous.get(path)
            assert response.status_code == 200, (path, response.text)
    # None of the refused calls did anything.
    status = proxy.status()
    assert (status["phase"], status["weight"]) == ("progressing", 10), status
    assert [t["kind"] for t in status["history"]] == ["start"], status["history"]
    assert proxy.metric("cutover_admin_auth_failures_total") == 6.0

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cutover_command(), "status", "--admin-url", proxy.admin_url, *args],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )

    ok = cli("--token", ADMIN_TOKEN)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    # One table line per migration (here the one, default), then its detail.
    assert lines[0].split()[:5] == ["NAME", "PHASE", "WEIGHT", "STAGE", "NEXT"], ok.stdout
    assert lines[1].split()[:4] == ["default", "progressing", "10%", "1/3"], ok.stdout
    assert lines[3].split() == ["phase", "progressing"], ok.stdout
    assert "weight    10% to new" in ok.stdout, ok.stdout

    refused = cli("--token", "wrong-token")
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "refused the token" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr
    assert refused.stdout == "", refused.stdout


# --------------------------------------------------------------------------- dual run

SHADOWED = "/api/v1/backtests/"


def shadow_sections(tmp_path: Path) -> dict[str, Any]:
    return {
        "routes": [
            {
                "prefix": SHADOWED,
                "shadow": {
                    "sample": 1.0,
                    "methods": ["POST"],  # execute is deterministic and side-effect free
                    "ignore": ["$.engine"],
                    "tolerance": {"relative": 0.01},
                },
            }
        ],
        "shadow": {"log_path": str(tmp_path / "shadow.jsonl")},
    }


def shadow_results(proxy: ProxyProcess) -> dict[str, float]:
    return {
        result: proxy.metric("cutover_shadow_requests_total", route=SHADOWED, result=result)
        for result in ("match", "mismatch", "error")
    }


def test_the_two_engines_agree_under_dual_run(
    cutover: Cutover, traffic: Callable[[ProxyProcess], TrafficDriver]
) -> None:
    proxy = cutover.start(**shadow_sections(cutover.tmp_path))
    traffic(proxy)
    final = wait_status(proxy, "the rollout to be promoted", lambda s: s["phase"] == "promoted")
    assert final["checks"]["shadow"]["result"] == "pass", final["checks"]
    seen = shadow_results(proxy)
    assert seen["match"] >= 100, seen
    assert seen["mismatch"] == 0, seen
    log = cutover.tmp_path / "shadow.jsonl"
    assert not log.exists() or log.read_text() == "", log.read_text()


def test_a_skewed_engine_is_caught_and_blocks_promotion(
    cutover: Cutover, faults: Faults, traffic: Callable[[ProxyProcess], TrafficDriver]
) -> None:
    faults.set(skew={"sharpe_ratio": 0.05})
    proxy = cutover.start(**shadow_sections(cutover.tmp_path))
    traffic(proxy)

    def gated_by_shadow_alone(status: dict[str, Any]) -> bool:
        results = {name: check["result"] for name, check in status["checks"].items()}
        return results.pop("shadow", None) == "fail" and set(results.values()) == {"pass"}

    # Every other check passes while the shadow check fails: only the gate holds it back.
    wait_status(proxy, "only the shadow check to fail", gated_by_shadow_alone)
    evaluations = guard_evaluations(proxy)
    # Well past the hold: a passing rollout would have been promoted twice by now.
    wait_until(
        lambda: guard_evaluations(proxy) >= evaluations + 3 * HOLD / INTERVAL or None,
        GUARD_DEADLINE, "more guard evaluations", proxy,
    )  # fmt: skip
    status = proxy.status()
    assert (status["phase"], status["weight"]) == ("progressing", 10), status
    assert status["checks"]["shadow"]["value"] > 0.01, status["checks"]["shadow"]
    assert not any(t["kind"] == "rollback" for t in status["history"]), status["history"]

    seen = shadow_results(proxy)
    assert seen["mismatch"] > 0, seen
    lines = (cutover.tmp_path / "shadow.jsonl").read_text().splitlines()
    assert lines, "no mismatch samples were written"
    paths = {diff["path"] for line in lines for diff in json.loads(line).get("diffs", [])}
    assert paths == {"$.sharpe_ratio"}, paths

    report = subprocess.run(
        [*cutover_command(), "diff-report", "--log", str(cutover.tmp_path / "shadow.jsonl")],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "$.sharpe_ratio" in report.stdout, report.stdout
