"""Real processes for end-to-end tests: both demo backends and ``cutover run``, each in its
own process group (so ``kill -9`` is a real one), plus a background traffic driver.

    legacy = Service.legacy(tmp_path).start()            # python -m cutover_demo.legacy_backend
    new = Service.new(tmp_path, token).start()           # python -m cutover_demo.new_backend
    proxy = ProxyProcess(tmp_path, config_path, ports, token).start()
    with TrafficDriver(proxy.url) as traffic:
        wait_until(lambda: proxy.status()["phase"] == "promoted", 20, "promotion", proxy)

Every process writes its stderr to ``<log_dir>/<name>.<n>.stderr.log`` (n counts the starts
of that process); failures show its tail.
Ports are found by binding port 0 and closing the socket (a small race, accepted).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
READY_DEADLINE = 20.0
STOP_DEADLINE = 5.0
LOG_TAIL = 4000

T = TypeVar("T")


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, never the same one twice in this test session (so
    two processes started together cannot be given one port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any CUTOVER_* / NEW_BACKEND_* setting (a stray
    one would silently override the test's config), plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CUTOVER_", "NEW_BACKEND_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def cutover_command() -> list[str]:
    """The installed ``cutover`` console script next to this interpreter."""
    script = Path(PYTHON).with_name("cutover")
    return [str(script)] if script.exists() else [PYTHON, "-m", "cutover"]


class ProcessFailure(AssertionError):
    pass


class Process:
    """One child process in its own session (process group == pid)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_dir = log_dir
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}.{self.starts}.stderr.log"

    def spawn(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} is running"
        self.starts += 1
        with (
            open(self.log_dir / f"{self.name}.{self.starts}.stdout.log", "wb") as out,
            open(self.stderr_path, "wb") as err,
        ):
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stderr(self) -> str:
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return text[-LOG_TAIL:]

    def describe(self) -> str:
        code = None if self.popen is None else self.popen.poll()
        state = "running" if code is None else f"exited with {code}"
        return f"--- {self.name} ({state}) stderr tail:\n{self.stderr() or '(empty)'}"

    def signal_group(self, sig: int) -> None:
        """Signal the process group, only while its leader is not reaped yet: until then
        its id cannot belong to anything else."""
        if self.popen is None or self.popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill9(self) -> None:
        """SIGKILL the whole process group (kill -9) and reap it."""
        if self.popen is None:
            return
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=STOP_DEADLINE)

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL it if it is still there after a few seconds."""
        if self.popen is None:
            return
        self.signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_DEADLINE)
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=STOP_DEADLINE)

    def wait_http_ok(self, url: str, deadline: float = READY_DEADLINE) -> None:
        """Poll ``url`` until it answers 200; fail early if the process exits."""
        end = time.monotonic() + deadline
        last = "no answer yet"
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while time.monotonic() < end:
                if not self.running():
                    raise ProcessFailure(f"{self.name} exited while starting\n{self.describe()}")
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:200]}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                time.sleep(0.05)
        raise ProcessFailure(
            f"{self.name} not ready at {url} within {deadline}s ({last})\n{self.describe()}"
        )


class Service(Process):
    """A demo backend: ``python -m cutover_demo.legacy_backend|new_backend --port P``."""

    def __init__(self, module: str, log_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [PYTHON, "-m", f"cutover_demo.{module}", "--port", str(self.port)]
        argv += ["--log-level", "warning"]
        super().__init__(module, argv, env, log_dir)

    @classmethod
    def legacy(cls, log_dir: Path) -> Service:
        return cls("legacy_backend", log_dir, clean_env())

    @classmethod
    def new(cls, log_dir: Path, admin_token: str) -> Service:
        return cls("new_backend", log_dir, clean_env(NEW_BACKEND_ADMIN_TOKEN=admin_token))

    def start(self) -> Service:
        self.spawn()
        try:
            self.wait_http_ok(f"{self.url}/healthz")
        except BaseException:
            self.stop()
            raise
        return self


class Faults:
    """The new backend's fault injection API."""

    def __init__(self, url: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=url, timeout=5.0, trust_env=False, headers={"Authorization": f"Bearer {token}"}
        )

    def set(self, **faults: Any) -> dict[str, Any]:
        response = self.client.put("/admin/faults", json=faults)
        assert response.status_code == 200, response.text
        return response.json()

    def clear(self) -> dict[str, Any]:
        response = self.client.delete("/admin/faults")
        assert response.status_code == 200, response.text
        return response.json()

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class ProxyPorts:
    listen: int
    admin: int

    @classmethod
    def pick(cls) -> ProxyPorts:
        return cls(free_port(), free_port())


class ProxyProcess(Process):
    """``cutover run --config FILE`` with CUTOVER_ADMIN_TOKEN; restartable on the same
    config, state file and ports (after a kill -9, say)."""

    def __init__(
        self,
        log_dir: Path,
        config_path: Path,
        ports: ProxyPorts,
        token: str,
        *,
        admin_host: str = "127.0.0.1",
        workers: int = 1,
    ) -> None:
        argv = [*cutover_command(), "run", "--config", str(config_path), "--log-level", "warning"]
        if workers > 1:
            argv += ["--workers", str(workers)]
        env = clean_env(CUTOVER_ADMIN_TOKEN=token)
        if "usage" not in (yaml.safe_load(config_path.read_text()) or {}):
            # The usage database goes with the test's files, never into the working tree.
            env["CUTOVER_USAGE__PATH"] = str(log_dir / "cutover-usage.sqlite3")
        super().__init__("proxy", argv, env, log_dir)
        self.config_path = config_path
        self.ports = ports
        self.token = token
        self.companions: list[Process] = []  # e.g. the backends: their logs go with ours
        self.url = f"http://127.0.0.1:{ports.listen}"
        self.admin_url = f"http://{admin_host}:{ports.admin}"
        self.admin = httpx.Client(
            base_url=self.admin_url,
            timeout=5.0,
            trust_env=False,
            headers={"Authorization": f"Bearer {token}"},
        )

    def describe(self) -> str:
        return "\n".join([super().describe(), *(other.describe() for other in self.companions)])

    def start(self) -> ProxyProcess:
        self.spawn()
        self.wait_http_ok(f"{self.admin_url}/readyz")
        return self

    def restart(self) -> ProxyProcess:
        assert not self.running(), "restart() is for after the proxy died or was killed"
        # A fresh client: the old one's pooled connections died with the process.
        self.admin.close()
        self.admin = httpx.Client(
            base_url=self.admin_url,
            timeout=5.0,
            trust_env=False,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        return self.start()

    def status(self) -> dict[str, Any]:
        response = self.admin.get("/status")
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        return response.json()

    def migrations(self) -> dict[str, dict[str, Any]]:
        """GET /migrations: every migration's document by name, in config order."""
        response = self.admin.get("/migrations")
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        return {doc["name"]: doc for doc in response.json()["migrations"]}

    def action(self, name: str, **body: Any) -> httpx.Response:
        return self.admin.post(f"/rollout/{name}", json=body or None)

    def metrics_text(self) -> str:
        response = self.admin.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics_text().splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            sample, _, rest = series.partition("{")
            if sample != name:
                continue
            if all(f'{key}="{val}"' in rest for key, val in labels.items()):
                total += float(value)
        return total

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.admin.close()


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *processes: Process,
    interval: float = 0.1,
) -> T:
    """Poll until ``predicate()`` is truthy and return it; fail with the last value seen
    (or the last exception) and the processes' stderr when ``timeout`` runs out."""
    end = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
        except (httpx.HTTPError, AssertionError, KeyError, ValueError) as exc:
            value, last = None, exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= end:
            logs = "\n".join(process.describe() for process in processes)
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{logs}"
            )
        time.sleep(interval)


def write_config(path: Path, config: dict[str, Any] | str) -> None:
    """Replace the file atomically, so the proxy's watcher never reads half a file."""
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_state(path: Path, migration: str = "default") -> dict[str, Any]:
    """One migration's saved state from the state file (version 2, keyed by migration)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document.get("version") == 2, document
    return document["migrations"][migration]


# --------------------------------------------------------------------------- traffic


@dataclass(frozen=True)
class Reply:
    sent: float  # time.monotonic() when the request was sent
    backend: str  # X-Cutover-Backend, or "none" when there was no response
    status: int  # 0 when there was no response


class TrafficDriver:
    """Background threads POSTing backtests through the proxy at about ``rate`` requests/s,
    each request with one of ``users`` X-User-Id values; every reply is recorded.
    ``method`` and ``path`` (``{}`` takes a request number) send other requests: a GET
    has no body."""

    PATH = "/api/v1/backtests/bt-{}/execute"
    BODY = {"strategy": "momentum", "symbol": "AAPL"}  # noqa: RUF012

    def __init__(
        self,
        base_url: str,
        *,
        rate: float = 150.0,
        workers: int = 12,
        users: int = 1000,
        method: str = "POST",
        path: str = PATH,
    ):
        self.base_url = base_url
        self.method = method
        self.path = path
        self.rate = rate
        self.workers = workers
        self.users = [f"user-{i}" for i in range(users)]
        self.replies: list[Reply] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ids = itertools.count()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> TrafficDriver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"traffic-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10.0)
        self._threads = []

    def _work(self, index: int) -> None:
        rng = random.Random(index)
        period = self.workers / self.rate
        next_at = time.monotonic() + rng.random() * period
        with httpx.Client(base_url=self.base_url, timeout=10.0, trust_env=False) as client:
            while not self._stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                # Behind schedule (slow replies): do not burst to catch up.
                next_at = max(next_at + period, time.monotonic())
                sent = time.monotonic()
                try:
                    response = client.request(
                        self.method,
                        self.path.format(next(self._ids)),
                        json=self.BODY if self.method == "POST" else None,
                        headers={"X-User-Id": rng.choice(self.users)},
                    )
                    reply = Reply(
                        sent, response.headers.get("x-cutover-backend", "?"), response.status_code
                    )
                except httpx.HTTPError:
                    reply = Reply(sent, "none", 0)
                    # The proxy may be down (killed on purpose): do not spin.
                    self._stop.wait(0.05)
                with self._lock:
                    self.replies.append(reply)

    def since(self, moment: float) -> list[Reply]:
        """Replies to the requests sent at or after ``moment`` (time.monotonic())."""
        with self._lock:
            return [reply for reply in self.replies if reply.sent >= moment]

    def count(self, moment: float = 0.0) -> Counter[tuple[str, int]]:
        return Counter((reply.backend, reply.status) for reply in self.since(moment))

    def wait_for_replies(self, moment: float, n: int, timeout: float = 10.0) -> list[Reply]:
        def enough() -> list[Reply] | None:
            replies = self.since(moment)
            return replies if len(replies) >= n else None

        return wait_until(enough, timeout, f"{n} replies to requests sent after t={moment:.2f}")


def established_to(pid: int, port: int) -> int:
    """Established TCP connections that process ``pid`` holds to remote ``port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.rpartition(":")[2], 16) == port and inode in inodes:
                count += 1
    return count


@dataclass
class Backends:
    """Both demo backends, and the new one's fault injection."""

    legacy: Service
    new: Service
    faults: Faults


@contextlib.contextmanager
def running_backends(log_dir: Path, faults_token: str) -> Iterator[Backends]:
    legacy = Service.legacy(log_dir)
    new = Service.new(log_dir, faults_token)
    faults = Faults(new.url, faults_token)
    try:
        legacy.start()
        new.start()
        yield Backends(legacy, new, faults)
    finally:
        faults.close()
        legacy.stop()
        new.stop()
