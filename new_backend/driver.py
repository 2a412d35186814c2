"""``cutover demo``: both demo backends, the proxy and a stream of traffic in one terminal,
showing the rollout ramp 10 → 50 → 100 on a short hold (and, with ``--fault``, the guard
rolling it back).

The three children run in sessions of their own (a Ctrl-C in the terminal reaches only the
demo), so the demo stops them itself: on Ctrl-C, SIGTERM or SIGHUP it stops the traffic,
then each child, then removes its temporary directory. Only SIGKILL leaves them behind.

This module starts, watches and stops the processes; the addresses are driver_ports', the
stop signals driver_signals' and the traffic and its display driver_traffic's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from cutover.cli.client import token_problem
from cutover.config import Settings
from cutover_demo.new_backend.driver_ports import (
    CONFIG_PORTS,
    Ports,
    address_overrides,
    apply_ports,
    host_port,
    local_url,
    port_is_free,
)
from cutover_demo.new_backend.driver_signals import DemoStopped, StopSignals
from cutover_demo.new_backend.driver_traffic import Traffic, drive

READY_DEADLINE = 30.0
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


def run_demo(
    settings: Settings,
    config_path: str,
    *,
    duration: float | None,
    rate: float,
    fault: str | None = None,
    ports: Ports = CONFIG_PORTS,
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
