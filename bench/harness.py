"""What every benchmark here needs: free ports, child processes in process groups of their
own (each with a log, always cleaned up), readiness polling, a process's resident memory,
the machine's description and the JSON results file.

The benchmarks run as scripts (``python bench/X.py``), so this folder is on sys.path and
they import it as ``harness``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import IO, Any

RSS_INTERVAL = 0.2  # seconds between RssSampler's readings
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# urllib must not follow http_proxy from the environment: every request here is local.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(Exception):
    """A service could not be started or a measurement could not be taken."""


# --------------------------------------------------------------------------- ports, env, HTTP


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without CUTOVER_* / NEW_BACKEND_* (a stray one would override the
    generated config), unbuffered (a child's log is complete when it dies), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "NEW_BACKEND_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


Answer = tuple[int, list[tuple[str, str]], bytes]


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> Answer:
    """(status, lowercased headers as a list of pairs, body) of one GET."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            pairs = [(k.lower(), v) for k, v in response.getheaders()]
            return response.status, pairs, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, [(k.lower(), v) for k, v in exc.headers.items()], exc.read()


# --------------------------------------------------------------------------- child processes


class Children:
    """Every child process by name, each in its own session so its whole group can be
    killed; its stdout and stderr go to ``logdir/NAME.log`` (appended on a restart)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        name: str,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        with open(self.log_path(name), "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=stdin,
                stdout=stdout if stdout is not None else log,
                stderr=log,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.logdir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path(name).read_text(errors="replace").strip().splitlines()
            return "\n".join(text[-lines:])
        return ""

    def wait_ready(self, name: str, url: str, timeout: float = 30.0) -> None:
        """Poll url until it answers 200; fail early if the process exits, late at the
        deadline, either way with the end of its log. (With an X-User-Id: a proxy with a
        sticky split needs a key; the others ignore it.)"""
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise BenchError(f"{name} exited with status {code}:\n{self.log_tail(name)}")
            try:
                status, _, _ = http_get(url, {"X-User-Id": "ready"}, timeout=1.0)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise BenchError(f"{name} not ready after {timeout:.0f} s ({last}):\n{self.log_tail(name)}")

    def stop(self, name: str, timeout: float = 5.0) -> None:
        """SIGTERM to the group, SIGKILL after ``timeout``; a no-op for a stopped child."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        # Stragglers in the group (nginx workers) go with the leader; make sure.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every child, the last started first, with the stop signals held off."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
        try:
            for name in reversed(list(self.procs)):
                self.stop(name, timeout)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_with_children(prefix: str, run: Callable[[Path, Children], int]) -> int:
    """``run(scratch, children)`` in a fresh temporary directory; every child is stopped
    however it ends. Ctrl-C, kill and a closed terminal all end in the same cleanup (even if
    SIGINT was ignored by the parent, as for background jobs of a non-interactive shell).
    Returns run's status, 130 when interrupted, 1 on a BenchError."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as name:
            children = Children(Path(name))
            try:
                return run(Path(name), children)
            finally:
                children.stop_all()
    except KeyboardInterrupt:
        print("\ninterrupted: all child processes stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"\nbenchmark aborted: {exc}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- memory


def proc_status_bytes(pid: int, key: str) -> int:
    """A byte figure of /proc/PID/status (VmRSS, VmHWM); OSError once the process is gone."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"{key} not in /proc/{pid}/status")


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process, or None if it is gone."""
    try:
        return proc_status_bytes(pid, "VmRSS")
    except (OSError, BenchError):
        return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM (the kernel's exact peak) so it covers only what follows."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """Samples a process's VmRSS every RSS_INTERVAL seconds in a background thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, BenchError):
                self.samples.append(proc_status_bytes(self.pid, "VmRSS"))
            if self._stop.wait(RSS_INTERVAL):
                return

    @contextlib.contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


# --------------------------------------------------------------------------- machine, results


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(**tools: str | None) -> dict[str, Any]:
    """The machine a run measured, with ``tools``' versions and the load average now."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        **tools,
        "loadavg_start": os.getloadavg(),
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    """The full results as JSON (dataclasses as objects, anything else unknown as text)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def default(value: Any) -> Any:
        return asdict(value) if hasattr(value, "__dataclass_fields__") else str(value)

    path.write_text(json.dumps(report, indent=2, default=default) + "\n")
    print(f"results written to {path}")
