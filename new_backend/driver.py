"""``cutover demo``: both demo backends, the proxy and a stream of traffic in one terminal,
showing each migration ramp (trade-engine 10 → 50 → 100, strategies 25 → 100 with
config/migrations.yaml) on short holds; with ``--fault``, the guard rolling back the one
migration whose endpoint the fault is confined to, while the others go on to promoted. It
ends once every migration is settled.

The three children run in sessions of their own (a Ctrl-C in the terminal reaches only the
demo), so the demo stops them itself: on Ctrl-C, SIGTERM or SIGHUP it stops the traffic,
then each child, then removes its temporary directory. Only SIGKILL leaves them behind.

This module starts, watches and stops the processes; the addresses are driver_ports', the
proxy's copy of the config driver_config's, the stop signals driver_signals', the traffic
driver_traffic's and the reading of GET /migrations driver_migrations'.
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
from cutover_demo.new_backend.driver_config import (
    DEMO_GUARD,
    DemoConfigError,
    holds_line,
    without_carried,
    write_demo_config,
)
from cutover_demo.new_backend.driver_ports import (
    CONFIG_PORTS,
    Addresses,
    Ports,
    address_overrides,
    demo_addresses,
    host_port,
    local_url,
    port_is_free,
)
from cutover_demo.new_backend.driver_signals import DemoStopped, StopSignals
from cutover_demo.new_backend.driver_traffic import STRATEGIES_PATH, FaultPlan, Traffic, drive

READY_DEADLINE = 30.0


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
    access_log: bool = False,
) -> int:
    try:
        addresses = demo_addresses(settings, ports)
    except KeyError as exc:
        print(f"demo: the config has no backend named {exc}: the demo runs its legacy and "
              "new backends as the backends named legacy and new", file=sys.stderr)  # fmt: skip
        return 1
    for name, (host, port), option in [
        ("legacy backend", host_port(addresses.legacy_url), "--legacy-port"),
        ("new backend", host_port(addresses.new_url), "--new-port"),
        ("proxy", addresses.listen, "--proxy-port"),
        ("admin API", addresses.admin, "--admin-port"),
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
            addresses, config_path, stop, admin_token=admin_token, token_made=given is None,
            duration=duration, rate=rate, fault=fault, access_log=access_log,
        )  # fmt: skip


def _run(
    addresses: Addresses,
    config_path: str,
    stop: StopSignals,
    *,
    admin_token: str,
    token_made: bool,
    duration: float | None,
    rate: float,
    fault: str | None,
    access_log: bool = False,
) -> int:
    python = sys.executable
    legacy_host, legacy_port = host_port(addresses.legacy_url)
    new_host, new_port = host_port(addresses.new_url)
    new_token = secrets.token_urlsafe(16)
    proxy_url = local_url(*addresses.listen)
    admin_url = local_url(*addresses.admin)
    with tempfile.TemporaryDirectory(prefix="cutover-demo-") as scratch:
        env = {
            **os.environ,
            "CUTOVER_ADMIN_TOKEN": admin_token,
            "NEW_BACKEND_ADMIN_TOKEN": new_token,
        }
        proxy_env = {
            **without_carried(env),
            **DEMO_GUARD,
            **address_overrides(addresses),
            "CUTOVER_STATE__PATH": str(Path(scratch) / "state.json"),
            "CUTOVER_USAGE__PATH": str(Path(scratch) / "usage.sqlite3"),
        }
        access_path = Path(scratch) / "access.log"
        if access_log:
            proxy_env |= {"CUTOVER_ACCESS_LOG__ENABLED": "true",
                          "CUTOVER_ACCESS_LOG__PATH": str(access_path)}  # fmt: skip
        try:
            demo_path, demo_config = write_demo_config(config_path, addresses, Path(scratch))
            with (
                child([python, "-m", "cutover_demo.legacy_backend", "--host", legacy_host,
                       "--port", str(legacy_port)], env) as legacy,
                child([python, "-m", "cutover_demo.new_backend", "--host", new_host,
                       "--port", str(new_port)], env) as new,
                child([python, "-m", "cutover", "run", "--config", str(demo_path),
                       "--log-level", "warning"], proxy_env) as proxy,
            ):  # fmt: skip
                try:
                    wait_until_ready(
                        "legacy backend", f"{addresses.legacy_url}/healthz", legacy, stop
                    )
                    wait_until_ready("new backend", f"{addresses.new_url}/healthz", new, stop)
                    wait_until_ready("proxy", f"{admin_url}/readyz", proxy, stop)
                except DemoStopped as exc:
                    print(f"demo: {exc} while starting: stopping", flush=True)
                    return 0
                print(
                    f"demo: proxy {proxy_url}  admin {admin_url}  legacy "
                    f"{addresses.legacy_url}  new {addresses.new_url}"
                )
                names = [m.get("name", "?") for m in demo_config.get("migrations") or []]
                print_admin_access(admin_url, admin_token, token_made, names)
                print(holds_line(demo_config))
                if access_log:
                    print("demo: the access log, a line per request; in another terminal:")
                    print(f"    tail -f {shlex.quote(str(access_path))}", flush=True)
                print(f"demo: traffic: POST /api/v1/backtests/{{id}}/execute and GET "
                      f"{STRATEGIES_PATH} in turn, sticky by X-User-Id; a line per migration "
                      "when it moves; it ends once every migration is promoted or rolled "
                      "back; Ctrl-C stops everything", flush=True)  # fmt: skip
                traffic = Traffic(proxy_url, admin_url, admin_token)
                plan = FaultPlan(fault, addresses.new_url, new_token) if fault else None
                done = asyncio.run(
                    drive(traffic, rate=rate, duration=duration, fault=plan, stop=stop)
                )
                total = dict(traffic.total)
                if stop.received is not None:
                    print(f"\ndemo: {stop.received}: stopping; served {total}", flush=True)
                else:
                    ended = "every migration settled" if done else "time is up"
                    print(f"demo: done ({ended}); served {total}", flush=True)
                    print_usage(admin_url, admin_token)
        except (DemoError, DemoConfigError) as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
    return 0


def print_usage(admin_url: str, token: str) -> None:
    """Who called the old APIs during the demo: ``cutover usage``'s table."""
    try:
        response = httpx.get(
            f"{admin_url}/usage", params={"since": "1d", "format": "table"},
            headers={"Authorization": f"Bearer {token}"}, timeout=5.0, trust_env=False,
        )  # fmt: skip
    except httpx.HTTPError as exc:
        print(f"demo: the usage report did not answer: {exc}", flush=True)
        return
    if response.is_success:
        print("demo: who still calls the old APIs (cutover usage --since 1d):")
        print(response.text.rstrip(), flush=True)


def print_admin_access(admin_url: str, token: str, made: bool, migrations: list[str]) -> None:
    """How to point the cutover commands of another terminal at this demo (and, with
    several ``migrations``, how to look at one of them)."""
    if made:
        print(f"demo: admin API token (made for this demo): {token}")
    else:
        print("demo: admin API token: the one in CUTOVER_ADMIN_TOKEN")
    print(f"demo: the console: {admin_url.rstrip('/')}/ (sign in with the admin token)")
    print("demo: to run cutover commands against the demo, paste into another terminal:")
    print(f"    export CUTOVER_ADMIN_URL={shlex.quote(admin_url)}")
    if made:
        print(f"    export CUTOVER_ADMIN_TOKEN={shlex.quote(token)}")
    print(f"    {cutover_script()} status", flush=True)
    if len(migrations) > 1:
        print(f"    {cutover_script()} status {migrations[0]}", flush=True)
    print(f"    {cutover_script()} usage        # who still calls the old APIs", flush=True)
