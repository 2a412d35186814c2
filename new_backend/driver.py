"""``cutover demo``: both demo backends, the proxy and a stream of traffic in one terminal,
showing the rollout ramp 10 → 50 → 100 on a short hold (and, with ``--fault``, the guard
rolling it back).

The three children run in sessions of their own (a Ctrl-C in the terminal reaches only the
demo), so the demo stops them itself: on Ctrl-C, SIGTERM or SIGHUP it stops the traffic,
then each child, then removes its temporary directory. Only SIGKILL leaves them behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from cutover.cli.client import token_problem
from cutover.config import Settings

STRATEGIES = ("sma_crossover", "rsi_mean_reversion", "momentum", "buy_and_hold")
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA")
READY_DEADLINE = 30.0
FAULTS: dict[str, dict[str, Any]] = {
    "error-rate": {"error_rate": 0.3},
    "latency": {"extra_latency_ms": 120},
    "memory": {"leak_kb_per_request": 4096},
}
# A quick guard and hold so the ramp is visible in a minute, applied to the proxy child
# through CUTOVER_* environment overrides; the config file keeps its production values.
DEMO_OVERRIDES = {
    "CUTOVER_ROLLOUT__HOLD": "8",
    "CUTOVER_GUARD__INTERVAL": "1",
    "CUTOVER_GUARD__WINDOW": "8",
    "CUTOVER_GUARD__MIN_REQUESTS": "20",
}


class DemoError(Exception):
    """The demo could not start (a port is taken, a process died)."""


class DemoStopped(Exception):
    """A stop signal arrived while the demo was starting; the argument is its name."""


@dataclass(frozen=True)
class Ports:
    """Ports from the command line, each replacing the config's (None: the config's)."""

    legacy: int | None = None
    new: int | None = None
    proxy: int | None = None
    admin: int | None = None


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP ask the demo to stop. The handler only records the first
    one and wakes the traffic loop, so a signal never interrupts starting or stopping a
    child; any later signal is ignored, so the cleanup always finishes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: str | None = None
        self._wake: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            return
        self.received = signal.Signals(signum).name
        if self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._wake()

    def check(self) -> None:
        if self.received is not None:
            raise DemoStopped(self.received)

    @contextlib.contextmanager
    def waking(self) -> Iterator[asyncio.Event]:
        """An event of the running loop that a stop signal sets (as asyncio.Runner wakes
        its loop on SIGINT: call_soon_threadsafe from the handler)."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self._wake = lambda: loop.call_soon_threadsafe(event.set)
        if self.received is not None:
            event.set()
        try:
            yield event
        finally:
            self._wake = None


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def local_url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def child(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


def apply_ports(settings: Settings, ports: Ports) -> Settings:
    """``settings`` with the demo's four listeners moved to ``ports`` (the new backend's
    metrics_url too, when it is served by the new backend itself)."""
    backends = settings.backends
    legacy, new = backends.legacy, backends.new
    if ports.legacy is not None:
        legacy = legacy.model_copy(update={"url": with_port(legacy.url, ports.legacy)})
    if ports.new is not None:
        update = {"url": with_port(new.url, ports.new)}
        if new.metrics_url and urlsplit(new.metrics_url).netloc == urlsplit(new.url).netloc:
            update["metrics_url"] = with_port(new.metrics_url, ports.new)
        new = new.model_copy(update=update)
    sections: dict[str, Any] = {
        "backends": backends.model_copy(update={"legacy": legacy, "new": new})
    }
    if ports.proxy is not None:
        sections["listen"] = settings.listen.model_copy(update={"port": ports.proxy})
    if ports.admin is not None:
        sections["admin"] = settings.admin.model_copy(update={"port": ports.admin})
    return settings.model_copy(update=sections)


def address_overrides(settings: Settings) -> dict[str, str]:
    """CUTOVER_* variables that give the proxy child the demo's addresses."""
    overrides = {
        "CUTOVER_LISTEN__PORT": str(settings.listen.port),
        "CUTOVER_ADMIN__PORT": str(settings.admin.port),
        "CUTOVER_BACKENDS__LEGACY__URL": settings.backends.legacy.url,
        "CUTOVER_BACKENDS__NEW__URL": settings.backends.new.url,
    }
    if settings.backends.new.metrics_url:
        overrides["CUTOVER_BACKENDS__NEW__METRICS_URL"] = settings.backends.new.metrics_url
    return overrides


def cutover_script() -> str:
    """How to run ``cutover`` from this directory (the venv's script, as make demo uses)."""
    script = Path(sys.executable).with_name("cutover")
    if not script.exists():
        return "cutover"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def wait_until_ready(
    name: str, url: str, process: subprocess.Popen[bytes], stop: StopSignals
) -> None:
    deadline = time.monotonic() + READY_DEADLINE
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            stop.check()
            if process.poll() is not None:
                raise DemoError(f"{name} exited with code {process.returncode} while starting")
            try:
                if client.get(url).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise DemoError(f"{name} did not answer at {url} within {READY_DEADLINE:.0f}s")


def execute_request() -> tuple[str, dict[str, object]]:
    body = {
        "strategy": random.choice(STRATEGIES),
        "symbol": random.choice(SYMBOLS),
        "start": "2021-01-01",
        "end": "2023-12-31",
        "initial_capital": 100_000,
    }
    return f"/api/v1/backtests/bt-{random.randrange(10_000)}/execute", body


class Traffic:
    def __init__(self, proxy_url: str, admin_url: str, admin_token: str) -> None:
        self.proxy = httpx.AsyncClient(base_url=proxy_url, timeout=10.0, trust_env=False)
        self.admin = httpx.AsyncClient(
            base_url=admin_url,
            timeout=5.0,
            trust_env=False,
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        self.served: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.users = [f"user-{i}" for i in range(500)]
        self.history_seen = 0

    async def send_one(self) -> None:
        path, body = execute_request()
        try:
            response = await self.proxy.post(
                path, json=body, headers={"X-User-Id": random.choice(self.users)}
            )
        except httpx.HTTPError:
            self.served["failed"] += 1
            return
        backend = response.headers.get("x-cutover-backend", "?")
        self.served[backend if response.status_code < 500 else "failed"] += 1

    async def status(self) -> dict[str, Any] | None:
        try:
            response = await self.admin.get("/status")
            return response.json() if response.is_success else None
        except (httpx.HTTPError, ValueError):
            return None

    async def report(self, elapsed: float) -> dict[str, Any] | None:
        status = await self.status()
        served, self.served = self.served, Counter()
        self.total.update(served)
        if status is None:
            print(f"t={elapsed:4.0f}s  (admin API not answering)", flush=True)
            return None
        for transition in status["history"][self.history_seen :]:
            if transition["actor"] != "startup":
                print(f"  >>> {transition['from_phase']} {transition['from_weight']:g}% -> "
                      f"{transition['to_phase']} {transition['to_weight']:g}%: "
                      f"{transition['reason']} ({transition['actor']})", flush=True)  # fmt: skip
        self.history_seen = len(status["history"])
        checks = " ".join(f"{name}={c['result']}" for name, c in status["checks"].items())
        print(
            f"t={elapsed:4.0f}s  {status['phase']:<11} weight={status['weight']:5.1f}%  "
            f"legacy={served['legacy']:3d} new={served['new']:3d} failed={served['failed']:2d}  "
            f"{checks}",
            flush=True,
        )
        return status

    async def aclose(self) -> None:
        await self.proxy.aclose()
        await self.admin.aclose()


async def drive(
    traffic: Traffic,
    *,
    rate: float,
    duration: float | None,
    fault: str | None,
    new_url: str,
    new_token: str,
    stop: StopSignals,
) -> Counter[str]:
    """Send traffic and report each second until ``duration`` is over or a stop signal."""
    started = time.monotonic()
    next_report = started + 1
    injected = False
    with stop.waking() as stopped:
        try:
            while not stopped.is_set() and (
                duration is None or time.monotonic() - started < duration
            ):
                tick = time.monotonic()
                await traffic.send_one()
                now = time.monotonic()
                if now >= next_report:
                    next_report += 1
                    status = await traffic.report(now - started)
                    if (
                        fault
                        and not injected
                        and status is not None
                        and status["weight"] >= 50
                        and status["phase"] != "rolled_back"
                    ):
                        await inject_fault(new_url, new_token, fault)
                        injected = True
                pause = max(0.0, 1 / rate - (time.monotonic() - tick))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), pause)
        finally:
            await traffic.aclose()
    return traffic.total


async def inject_fault(new_url: str, token: str, fault: str) -> None:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        response = await client.put(
            f"{new_url}/admin/faults",
            json=FAULTS[fault],
            headers={"Authorization": f"Bearer {token}"},
        )
    response.raise_for_status()
    print(f"  !!! injected a fault into the new backend: {FAULTS[fault]}", flush=True)


def run_demo(
    settings: Settings,
    config_path: str,
    *,
    duration: float | None,
    rate: float,
    fault: str | None = None,
    ports: Ports = Ports(),
) -> int:
    settings = apply_ports(settings, ports)
    listen = (settings.listen.host, settings.listen.port)
    admin = (settings.admin.host, settings.admin.port)
    for name, (host, port), option in [
        ("legacy backend", host_port(settings.backends.legacy.url), "--legacy-port"),
        ("new backend", host_port(settings.backends.new.url), "--new-port"),
        ("proxy", listen, "--proxy-port"),
        ("admin API", admin, "--admin-port"),
    ]:
        if not port_is_free(host, port):
            print(f"demo: port {host}:{port} for the {name} is in use; stop what holds it "
                  f"or pick another with {option}", file=sys.stderr)  # fmt: skip
            return 1
    # The admin API's token: CUTOVER_ADMIN_TOKEN when set (it is in the settings), so the
    # cutover commands of this shell work against the demo; else one made for this run.
    given = settings.admin_token.get_secret_value() if settings.admin_token else None
    if given is not None and (problem := token_problem(given)) is not None:
        print(f"demo: CUTOVER_ADMIN_TOKEN: {problem}", file=sys.stderr)
        return 2
    admin_token = given or secrets.token_urlsafe(16)
    with StopSignals() as stop:
        return _run(
            settings, config_path, stop, admin_token=admin_token, token_made=given is None,
            duration=duration, rate=rate, fault=fault,
        )  # fmt: skip


def _run(
    settings: Settings,
    config_path: str,
    stop: StopSignals,
    *,
    admin_token: str,
    token_made: bool,
    duration: float | None,
    rate: float,
    fault: str | None,
) -> int:
    python = sys.executable
    legacy_host, legacy_port = host_port(settings.backends.legacy.url)
    new_host, new_port = host_port(settings.backends.new.url)
    new_token = secrets.token_urlsafe(16)
    proxy_url = local_url(settings.listen.host, settings.listen.port)
    admin_url = local_url(settings.admin.host, settings.admin.port)
    with tempfile.TemporaryDirectory(prefix="cutover-demo-") as scratch:
        env = {
            **os.environ,
            "CUTOVER_ADMIN_TOKEN": admin_token,
            "NEW_BACKEND_ADMIN_TOKEN": new_token,
        }
        proxy_env = {
            **env,
            **DEMO_OVERRIDES,
            **address_overrides(settings),
            "CUTOVER_STATE__PATH": str(Path(scratch) / "state.json"),
        }
        try:
            with (
                child([python, "-m", "cutover_demo.legacy_backend", "--host", legacy_host,
                       "--port", str(legacy_port)], env) as legacy,
                child([python, "-m", "cutover_demo.new_backend", "--host", new_host,
                       "--port", str(new_port)], env) as new,
                child([python, "-m", "cutover", "run", "--config", config_path,
                       "--log-level", "warning"], proxy_env) as proxy,
            ):  # fmt: skip
                try:
                    wait_until_ready(
                        "legacy backend", f"{settings.backends.legacy.url}/healthz", legacy, stop
                    )
                    wait_until_ready(
                        "new backend", f"{settings.backends.new.url}/healthz", new, stop
                    )
                    wait_until_ready("proxy", f"{admin_url}/readyz", proxy, stop)
                except DemoStopped as exc:
                    print(f"demo: {exc} while starting: stopping", flush=True)
                    return 0
                print(
                    f"demo: proxy {proxy_url}  admin {admin_url}  legacy "
                    f"{settings.backends.legacy.url}  new {settings.backends.new.url}"
                )
                print_admin_access(admin_url, admin_token, token_made)
                print("demo: the rollout holds each stage for 8 s of passing checks; "
                      + (f"a {fault} fault goes into new at 50 %; " if fault else "")
                      + "Ctrl-C stops everything", flush=True)  # fmt: skip
                traffic = Traffic(proxy_url, admin_url, admin_token)
                total = asyncio.run(
                    drive(traffic, rate=rate, duration=duration, fault=fault,
                          new_url=settings.backends.new.url, new_token=new_token, stop=stop)
                )  # fmt: skip
                if stop.received is not None:
                    print(f"\ndemo: {stop.received}: stopping; served {dict(total)}", flush=True)
                else:
                    print(f"demo: done; served {dict(total)}", flush=True)
        except DemoError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
    return 0


def print_admin_access(admin_url: str, token: str, made: bool) -> None:
    """How to point the cutover commands of another terminal at this demo."""
    if made:
        print(f"demo: admin API token (made for this demo): {token}")
    else:
        print("demo: admin API token: the one in CUTOVER_ADMIN_TOKEN")
    print("demo: to run cutover commands against the demo, paste into another terminal:")
    print(f"    export CUTOVER_ADMIN_URL={shlex.quote(admin_url)}")
    if made:
        print(f"    export CUTOVER_ADMIN_TOKEN={shlex.quote(token)}")
    print(f"    {cutover_script()} status", flush=True)
