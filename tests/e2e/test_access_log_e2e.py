"""End to end: ``cutover run --access-log FILE`` in front of the standard library's
http.server: a JSON line per request with the request id the backend saw and the client
got back, the file reopened on SIGHUP after logrotate moved it, the last lines written at
shutdown; ``--access-log`` alone writes to stdout."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cutover.cli.main import main
from tests.processes import ProxyPorts, ProxyProcess, wait_until
from tests.servers import echo_backend

pytestmark = pytest.mark.e2e

TOKEN = "alog-admin-token-0123456789abcdef"
DEADLINE = 15.0


@pytest.fixture
def backend() -> Iterator[str]:
    with echo_backend() as url:
        yield url


def start_proxy(tmp_path: Path, backend: str, *access_log: str) -> ProxyProcess:
    ports = ProxyPorts.pick()
    config = {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {"legacy": {"url": backend}, "new": {"url": backend}},
        "split": {"weight": 0},
        "state": {"path": str(tmp_path / "state.json")},
    }
    path = tmp_path / "cutover.yaml"
    path.write_text(yaml.safe_dump(config))
    proxy = ProxyProcess(tmp_path, path, ports, TOKEN)
    proxy.argv += ["--access-log", *access_log]
    return proxy.start()


def lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def test_a_line_per_request_with_the_id_the_backend_saw(tmp_path: Path, backend: str) -> None:
    log = tmp_path / "access.log"
    proxy = start_proxy(tmp_path, backend, str(log))
    try:
        with httpx.Client(base_url=proxy.url, trust_env=False, timeout=5) as client:
            kept = client.get("/api/x?a=1", headers={"X-Request-Id": "e2e-kept"})
            made = client.get("/api/y", headers={"X-Request-Id": "\u00e9t\u00e9".encode()})
            refused = client.request("TRACE", "/api/z")
        assert kept.json()["x-request-id"] == kept.headers["x-request-id"] == "e2e-kept"
        assert made.json()["x-request-id"] == made.headers["x-request-id"] != "été"
        assert refused.status_code == 405
        found = wait_until(lambda: len(lines(log)) == 3 and lines(log), DEADLINE,
                           "three access log lines", proxy)  # fmt: skip
        assert [(f["method"], f["target"], f["status"], f["backend"], f["request_id"])
                for f in found] == [
            ("GET", "/api/x?a=1", 200, "legacy", "e2e-kept"),
            ("GET", "/api/y", 200, "legacy", made.headers["x-request-id"]),
            ("TRACE", "/api/z", 405, None, refused.headers["x-request-id"]),
        ]  # fmt: skip
        assert all(f["client"] == "127.0.0.1" and f["migration"] in ("default", None)
                   for f in found)  # fmt: skip
        assert found[0]["bytes_sent"] == len(kept.content)
        assert "\ncutover_access_log_dropped_total 0.0\n" in proxy.metrics_text()
    finally:
        proxy.close()
    assert "Traceback" not in proxy.stderr(), proxy.describe()


def test_sighup_reopens_the_moved_file_and_shutdown_writes_the_last_lines(
    tmp_path: Path, backend: str
) -> None:
    log, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    proxy = start_proxy(tmp_path, backend, str(log))
    try:
        with httpx.Client(base_url=proxy.url, trust_env=False, timeout=5) as client:
            client.get("/before")
            wait_until(lambda: lines(log), DEADLINE, "the first line", proxy)
            log.rename(rotated)  # as logrotate does, then its postrotate: kill -HUP
            proxy.signal_group(signal.SIGHUP)

            def logged_after() -> bool:
                client.get("/after")
                return bool(lines(log))

            wait_until(logged_after, DEADLINE, "a line in the new file", proxy)
            client.get("/last")
        proxy.stop()  # SIGTERM: the drain, then the lifespan shutdown writes what is queued
        old, new = [f["target"] for f in lines(rotated)], [f["target"] for f in lines(log)]
        assert old[0] == "/before" and set(old[1:]) <= {"/after"}
        assert set(new[:-1]) == {"/after"} and new[-1] == "/last"
    finally:
        proxy.close()
    assert "Traceback" not in proxy.stderr(), proxy.describe()


def test_the_flag_alone_writes_to_stdout(tmp_path: Path, backend: str) -> None:
    proxy = start_proxy(tmp_path, backend)
    stdout = tmp_path / f"proxy.{proxy.starts}.stdout.log"
    try:
        response = httpx.get(proxy.url + "/api/out", trust_env=False, timeout=5)
        found = wait_until(lambda: lines(stdout), DEADLINE, "a line on stdout", proxy)
        assert (found[0]["target"], found[0]["request_id"]) == (
            "/api/out", response.headers["x-request-id"],
        )  # fmt: skip
    finally:
        proxy.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_log_file_that_cannot_be_opened_stops_the_start(
    workers: str,
    tmp_path: Path,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # main() sets these for the run: monkeypatch puts them back afterwards.
    monkeypatch.setenv("CUTOVER_ACCESS_LOG__ENABLED", "false")
    monkeypatch.setenv("CUTOVER_ACCESS_LOG__PATH", "stdout")
    ports = ProxyPorts.pick()
    config = tmp_path / "cutover.yaml"
    config.write_text(yaml.safe_dump({
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {"legacy": {"url": backend}, "new": {"url": backend}},
        "state": {"path": str(tmp_path / "state.json")},
        "usage": {"path": str(tmp_path / "usage.sqlite3")},
    }))  # fmt: skip
    missing = tmp_path / "no-such-dir" / "access.log"
    code = main(
        ["run", "--config", str(config), "--workers", workers, "--access-log", str(missing)]
    )
    assert code == 2
    reason = "No such file or directory"
    assert capsys.readouterr().err == f"access_log.path: cannot open {missing}: {reason}\n"
