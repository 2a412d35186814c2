"""``cutover demo`` and ``make demo`` as a newcomer meets them: the admin token and the lines
to paste into another terminal are printed, a cutover command works against the running demo,
and a SIGTERM or SIGHUP stops all three children and removes the demo's temporary directory.

Real processes on free ports (``--proxy-port`` and the like); the children run in sessions of
their own, so only the demo can stop them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import (
    ROOT,
    Process,
    clean_env,
    cutover_command,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.e2e

CONFIG = ROOT / "config" / "cutover.yaml"
MIGRATIONS = ROOT / "config" / "migrations.yaml"  # what make demo runs
SETTLE_DEADLINE = 180.0
START_DEADLINE = 60.0
STOP_WITHIN = 30.0  # each child gets 10 s for its SIGTERM before the demo kills it


def port_options() -> tuple[list[str], list[int]]:
    ports = [free_port() for _ in range(4)]
    names = ["--proxy-port", "--admin-port", "--legacy-port", "--new-port"]
    return [item for pair in zip(names, map(str, ports), strict=True) for item in pair], ports


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                # pid (comm) state ppid ...: comm may hold spaces and parentheses.
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Demo(Process):
    """The demo's command with its stdout kept in a file we read as it grows."""

    def __init__(self, argv: list[str], tmp_path: Path, **env: str) -> None:
        self.scratch = tmp_path / "tmp"  # TMPDIR: where the demo makes its directory
        self.scratch.mkdir()
        super().__init__("demo", argv, clean_env(TMPDIR=str(self.scratch), **env), tmp_path)
        self.children: set[int] = set()

    def stdout(self) -> str:
        path = self.log_dir / f"{self.name}.{self.starts}.stdout.log"
        return path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, pattern: str) -> re.Match[str]:
        def seen() -> re.Match[str] | None:
            assert self.running(), f"the demo exited\n{self.stdout()}\n{self.describe()}"
            return re.search(pattern, self.stdout(), re.MULTILINE)

        return wait_until(seen, START_DEADLINE, f"{pattern!r} in the demo's output", self)

    def kill_leftovers(self) -> None:
        """After a failed test: nothing of ours may keep running."""
        for pid in self.children:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        self.kill9()


@contextlib.contextmanager
def demo_process(argv: list[str], tmp_path: Path, **env: str) -> Iterator[Demo]:
    demo = Demo(argv, tmp_path, **env)
    demo.spawn()
    try:
        yield demo
    finally:
        demo.kill_leftovers()


def status_with(admin_url: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cutover_command(), "status"],
        env=clean_env(CUTOVER_ADMIN_URL=admin_url, CUTOVER_ADMIN_TOKEN=token),
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_cleaned_up(demo: Demo, ports: list[int]) -> None:
    assert demo.popen is not None
    code = demo.popen.wait(timeout=STOP_WITHIN)
    assert code == 0, f"exit {code}\n{demo.stdout()}\n{demo.describe()}"
    still = [pid for pid in demo.children if alive(pid)]
    assert not still, f"children still running after the demo stopped: {still}"
    assert all(port_free(port) for port in ports), ports
    assert list(demo.scratch.iterdir()) == [], "the demo's temporary directory is left"


def exported(demo: Demo, name: str) -> str:
    return demo.wait_for(rf"^    export {name}=(\S+)$").group(1)


def test_the_demo_prints_its_token_answers_status_and_stops_on_sigterm(tmp_path: Path) -> None:
    options, ports = port_options()
    argv = [*cutover_command(), "demo", "--config", str(CONFIG), *options]
    with demo_process(argv, tmp_path) as demo:
        token = exported(demo, "CUTOVER_ADMIN_TOKEN")
        admin_url = exported(demo, "CUTOVER_ADMIN_URL")
        assert admin_url == f"http://127.0.0.1:{ports[1]}"
        assert f"demo: admin API token (made for this demo): {token}" in demo.stdout()
        assert f"demo: the console: {admin_url}/ (sign in with the admin token)" in demo.stdout()
        console = httpx.get(f"{admin_url}/", trust_env=False)
        assert (console.status_code, console.headers["location"]) == (303, "/console/signin")
        demo.children = descendants(demo.pid)
        assert len(demo.children) == 3, demo.children  # both backends and the proxy

        status = status_with(admin_url, token)
        assert status.returncode == 0, status.stderr
        assert re.search(r"\bprogressing\b", status.stdout), status.stdout

        os.kill(demo.pid, signal.SIGTERM)  # the demo alone, as `kill` or `timeout` do
        assert_cleaned_up(demo, ports)
        assert "demo: SIGTERM: stopping" in demo.stdout()


def test_the_demo_uses_the_token_already_set_and_stops_on_sighup(tmp_path: Path) -> None:
    options, ports = port_options()
    argv = [*cutover_command(), "demo", "--config", str(CONFIG), *options]
    with demo_process(argv, tmp_path, CUTOVER_ADMIN_TOKEN="my-own-token") as demo:
        admin_url = exported(demo, "CUTOVER_ADMIN_URL")
        demo.wait_for(r"status$")
        assert "demo: admin API token: the one in CUTOVER_ADMIN_TOKEN" in demo.stdout()
        assert "my-own-token" not in demo.stdout()
        demo.children = descendants(demo.pid)
        assert len(demo.children) == 3, demo.children

        status = status_with(admin_url, "my-own-token")
        assert status.returncode == 0, status.stderr

        os.kill(demo.pid, signal.SIGHUP)  # as when its terminal closes
        assert_cleaned_up(demo, ports)


def test_a_fault_on_one_prefix_rolls_back_that_migration_while_the_other_is_promoted(
    tmp_path: Path,
) -> None:
    options, ports = port_options()
    argv = [*cutover_command(), "demo", "--config", str(MIGRATIONS), "--fault", "error-rate",
            *options]  # fmt: skip
    with demo_process(argv, tmp_path) as demo:
        exported(demo, "CUTOVER_ADMIN_TOKEN")
        demo.children = descendants(demo.pid)
        injected = demo.wait_for(r"^  !!! injected a fault into the new backend: (.*)$")
        assert "'path_prefix': '/api/v1/backtests/'" in injected.group(1)
        ended = wait_until(
            lambda: re.search(r"^demo: every migration is settled: (.*)$", demo.stdout(), re.M),
            SETTLE_DEADLINE, "every migration settled", demo,
        )  # fmt: skip
        assert ended.group(1) == "trade-engine rolled_back, strategies promoted", demo.stdout()
        assert re.search(
            r"^  >>> trade-engine: progressing 50% -> rolled_back", demo.stdout(), re.M
        )
        assert_cleaned_up(demo, ports)  # it ends by itself once both are settled
        assert "demo: done (every migration settled)" in demo.stdout()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_stops_everything_on_sigterm(tmp_path: Path) -> None:
    options, ports = port_options()
    venv = Path(sys.executable).parent.parent
    argv = [
        "make", "--no-print-directory", f"VENV={venv}",
        # The venv is the one running these tests: never rebuild it from here.
        "-o", str(venv / ".installed"),
        "demo", f"DEMO_ARGS={' '.join(options)}",
    ]  # fmt: skip
    with demo_process(argv, tmp_path) as make:
        exported(make, "CUTOVER_ADMIN_TOKEN")
        make.children = descendants(make.pid)
        assert len(make.children) == 4, make.children  # cutover demo and its three

        os.kill(make.pid, signal.SIGTERM)  # make alone: it passes SIGTERM on to its recipe
        assert make.popen is not None
        make.popen.wait(timeout=STOP_WITHIN)
        still = [pid for pid in make.children if alive(pid)]
        assert not still, f"still running after make stopped: {still}"
        assert all(port_free(port) for port in ports), ports
        assert list(make.scratch.iterdir()) == []


def test_the_demo_with_access_log_prints_the_tail_command_of_a_growing_log(
    tmp_path: Path,
) -> None:
    options, ports = port_options()
    argv = [*cutover_command(), "demo", "--config", str(MIGRATIONS), "--access-log", *options]
    with demo_process(argv, tmp_path) as demo:
        log = Path(demo.wait_for(r"^    tail -f (\S+)$").group(1))
        assert log.parent.parent == demo.scratch  # the demo's own temporary directory
        demo.children = descendants(demo.pid)

        def requests_logged() -> list[dict[str, object]]:
            found = [json.loads(line) for line in log.read_text().splitlines()]
            return (
                found
                if {line["migration"] for line in found} >= {"trade-engine", "strategies"}
                else []
            )

        found = wait_until(requests_logged, START_DEADLINE, "both migrations' lines", demo)
        assert all(len(str(line["request_id"])) == 32 for line in found)
        os.kill(demo.pid, signal.SIGTERM)
        assert_cleaned_up(demo, ports)
