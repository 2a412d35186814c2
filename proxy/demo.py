"""``cutover demo``: both demo backends, the proxy and a stream of traffic in one terminal,
showing the rollout ramp 10 → 50 → 100 on a short hold (and, with ``--fault``, the guard
rolling it back)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from .config import Settings

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


def wait_until_ready(name: str, url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_DEADLINE
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while time.monotonic() < deadline:
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
) -> Counter[str]:
    started = time.monotonic()
    next_report = started + 1
    injected = False
    try:
        while duration is None or time.monotonic() - started < duration:
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
            await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - tick)))
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
) -> int:
    python = sys.executable
    legacy_host, legacy_port = host_port(settings.backends.legacy.url)
    new_host, new_port = host_port(settings.backends.new.url)
    listen = (settings.listen.host, settings.listen.port)
    admin = (settings.admin.host, settings.admin.port)
    for name, (host, port) in {
        "legacy backend": (legacy_host, legacy_port),
        "new backend": (new_host, new_port),
        "proxy": listen,
        "admin API": admin,
    }.items():
        if not port_is_free(host, port):
            print(f"demo: port {host}:{port} for the {name} is in use; stop what holds it "
                  "or change the ports in the config", file=sys.stderr)  # fmt: skip
            return 1
    admin_token = secrets.token_urlsafe(16)
    new_token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="cutover-demo-") as scratch:
        env = {
            **os.environ,
            "CUTOVER_ADMIN_TOKEN": admin_token,
            "NEW_BACKEND_ADMIN_TOKEN": new_token,
        }
        proxy_env = {
            **env,
            **DEMO_OVERRIDES,
            "CUTOVER_STATE__PATH": str(Path(scratch) / "state.json"),
        }
        proxy_url, admin_url = local_url(*listen), local_url(*admin)
        try:
            with (
                child([python, "-m", "legacy_backend", "--host", legacy_host,
                       "--port", str(legacy_port)], env) as legacy,
                child([python, "-m", "new_backend", "--host", new_host,
                       "--port", str(new_port)], env) as new,
                child([python, "-m", "proxy", "run", "--config", config_path,
                       "--log-level", "warning"], proxy_env) as proxy,
            ):  # fmt: skip
                wait_until_ready(
                    "legacy backend", f"{settings.backends.legacy.url}/healthz", legacy
                )
                wait_until_ready("new backend", f"{settings.backends.new.url}/healthz", new)
                wait_until_ready("proxy", f"{admin_url}/readyz", proxy)
                print(
                    f"demo: proxy {proxy_url}  admin {admin_url}  legacy "
                    f"{settings.backends.legacy.url}  new {settings.backends.new.url}"
                )
                print("demo: the rollout holds each stage for 8 s of passing checks; "
                      + (f"a {fault} fault goes into new at 50 %; " if fault else "")
                      + "Ctrl-C stops everything", flush=True)  # fmt: skip
                traffic = Traffic(proxy_url, admin_url, admin_token)
                try:
                    total = asyncio.run(
                        drive(traffic, rate=rate, duration=duration, fault=fault,
                              new_url=settings.backends.new.url, new_token=new_token)
                    )  # fmt: skip
                except KeyboardInterrupt:
                    print("\ndemo: stopping")
                    return 0
                print(f"demo: done; served {dict(total)}")
        except DemoError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
    return 0
