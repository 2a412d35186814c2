"""``cutover demo``: both demo backends, the proxy and a trickle of traffic, in one terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .config import Settings

STRATEGIES = ("sma_crossover", "rsi_mean_reversion", "momentum", "buy_and_hold")
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA")
READY_DEADLINE = 30.0


class DemoError(Exception):
    """The demo could not start (a port is taken, a process died)."""


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def child(name: str, argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(argv, start_new_session=True)
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
                client.get(url)
                return
            except httpx.TransportError:
                time.sleep(0.1)
    raise DemoError(f"{name} did not answer at {url} within {READY_DEADLINE:.0f}s")


def execute_request() -> tuple[str, dict[str, object]]:
    backtest = f"bt-{random.randrange(10_000)}"
    body = {
        "strategy": random.choice(STRATEGIES),
        "symbol": random.choice(SYMBOLS),
        "start": "2021-01-01",
        "end": "2023-12-31",
        "initial_capital": 100_000,
    }
    return f"/api/v1/backtests/{backtest}/execute", body


async def drive(settings: Settings, *, rate: float, duration: float | None) -> Counter[str]:
    host, port = settings.listen.host, settings.listen.port
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    served: Counter[str] = Counter()
    total: Counter[str] = Counter()
    started = time.monotonic()
    next_report = started + 1
    users = [f"user-{i}" for i in range(500)]
    async with httpx.AsyncClient(base_url=base, timeout=10.0, trust_env=False) as client:
        while duration is None or time.monotonic() - started < duration:
            path, body = execute_request()
            headers = {"X-User-Id": random.choice(users)}
            try:
                response = await client.post(path, json=body, headers=headers)
                backend = response.headers.get("x-cutover-backend", "?")
                served[backend if response.status_code < 500 else f"{backend} errors"] += 1
            except httpx.HTTPError:
                served["proxy errors"] += 1
            now = time.monotonic()
            if now >= next_report:
                report(now - started, settings.split.weight, served)
                total.update(served)
                served.clear()
                next_report += 1
            await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - now)))
    total.update(served)
    return total


def report(elapsed: float, weight: float, served: Counter[str]) -> None:
    legacy, new = served["legacy"], served["new"]
    share = 100 * new / (legacy + new) if legacy + new else 0.0
    errors = sum(count for key, count in served.items() if "error" in key)
    print(
        f"t={elapsed:5.0f}s  weight={weight:5.1f}%  legacy={legacy:4d}  new={new:4d}"
        f"  (new {share:5.1f}%)  errors={errors}",
        flush=True,
    )


def run_demo(settings: Settings, config_path: str, *, duration: float | None, rate: float) -> int:
    python = sys.executable
    legacy_host, legacy_port = host_port(settings.backends.legacy.url)
    new_host, new_port = host_port(settings.backends.new.url)
    listen = (settings.listen.host, settings.listen.port)
    for name, (host, port) in {
        "legacy backend": (legacy_host, legacy_port),
        "new backend": (new_host, new_port),
        "proxy": listen,
    }.items():
        if not port_is_free(host, port):
            print(
                f"demo: port {host}:{port} for the {name} is in use; stop what holds it "
                "or change the ports in the config",
                file=sys.stderr,
            )
            return 1
    proxy_url = f"http://{listen[0]}:{listen[1]}/api/v1/strategies"
    try:
        with (
            child(
                "legacy",
                [python, "-m", "legacy_backend", "--host", legacy_host, "--port", str(legacy_port)],
            ) as legacy,
            child(
                "new", [python, "-m", "new_backend", "--host", new_host, "--port", str(new_port)]
            ) as new,
            child(
                "proxy",
                [
                    python,
                    "-m",
                    "proxy",
                    "run",
                    "--config",
                    str(Path(config_path)),
                    "--log-level",
                    "warning",
                ],
            ) as proxy,
        ):
            wait_until_ready("legacy backend", f"{settings.backends.legacy.url}/healthz", legacy)
            wait_until_ready("new backend", f"{settings.backends.new.url}/healthz", new)
            wait_until_ready("proxy", proxy_url, proxy)
            print(
                f"demo: proxy on http://{listen[0]}:{listen[1]}  "
                f"legacy {settings.backends.legacy.url}  new {settings.backends.new.url}"
            )
            print("demo: sending traffic; Ctrl-C stops everything", flush=True)
            try:
                total = asyncio.run(drive(settings, rate=rate, duration=duration))
            except KeyboardInterrupt:
                print("\ndemo: stopping")
                return 0
            print(f"demo: done; served {dict(total)}")
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0
