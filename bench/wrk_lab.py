"""The lab proxy_bench and control_bench share: nginx, wrk and curl (installed when
missing), CPU pinning (the proxy under test alone on a CPU), nginx children, wrk runs and
their figures, and how busy the proxy's CPU was with other people's work."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import BenchError, Children

REQUEST_PATH = "/api/v1/items"

JSON_BODY = (
    '{"service":"bench-upstream","status":"ok","items":[1,2,3,4,5],'
    '"note":"one hundred bytes of json"}'
)

WRK_SCRIPT = """\
-- A different X-User-Id on every request, so sticky splitting does real work, from one of
-- 50 client applications (X-Client-Id), so the usage count keeps rows for each.
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, {
    ["X-User-Id"] = "user-" .. counter,
    ["X-Client-Id"] = "app-" .. (counter % 50),
  })
end
"""


# --------------------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(folder) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def apt_install(packages: list[str]) -> bool:
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def run(*cmd: str) -> bool:
        done = subprocess.run([*prefix, *cmd], env=env, capture_output=True, check=False)
        return done.returncode == 0

    install = ("apt-get", "install", "-y", "-qq", *packages)
    return run(*install) or (run("apt-get", "update", "-qq") and run(*install))


def ensure_tools() -> dict[str, str | None]:
    """nginx, wrk and curl, installing the missing ones with apt-get if possible."""
    tools = {name: find_tool(name) for name in ("nginx", "wrk", "curl")}
    missing = [name for name, path in tools.items() if path is None]
    if missing and shutil.which("apt-get"):
        print(f"installing {', '.join(missing)} with apt-get ...", flush=True)
        packages = ["nginx-light" if name == "nginx" else name for name in missing]
        if not apt_install(packages) and "nginx" in missing:
            apt_install(["nginx" if p == "nginx-light" else p for p in packages])
        tools = {name: find_tool(name) for name in tools}
    for name, path in tools.items():
        if path is None:
            print(f"WARNING: {name} is not installed and could not be installed.", flush=True)
    return tools


def tool_version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    if not text:
        return "?"
    # "nginx version: nginx/1.22.1", "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) ..."
    return text[0].removeprefix("nginx version: ").split(" Copyright")[0].strip()


def tool_versions(tools: dict[str, str | None]) -> dict[str, str | None]:
    """nginx's and wrk's versions (None for a missing one), for harness.machine_info."""
    return {
        "nginx": tool_version([tools["nginx"], "-v"]) if tools["nginx"] else None,
        "wrk": tool_version([tools["wrk"], "-v"]) if tools["wrk"] else None,
    }


# --------------------------------------------------------------------------- pinning


@dataclass
class Pinning:
    load: list[str]  # command prefix for wrk, curl and the upstreams
    proxy: list[str]  # command prefix for the proxy under test
    note: str
    load_cpu: int | None = None
    proxy_cpu: int | None = None


def choose_pinning() -> Pinning:
    cpus = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if taskset and len(cpus) >= 2:
        load, proxy = str(cpus[0]), str(cpus[1])
        return Pinning(
            [taskset, "-c", load],
            [taskset, "-c", proxy],
            f"wrk + upstreams on CPU {load}, proxy under test on CPU {proxy}",
            cpus[0],
            cpus[1],
        )
    reason = "taskset is missing" if not taskset else f"only {len(cpus)} CPU available"
    return Pinning([], [], f"UNPINNED ({reason}): every process shares the CPUs")


def keep_off_the_proxy_cpu(pin: Pinning) -> None:
    """This process (and what it starts unpinned) on the load's CPU."""
    if pin.load_cpu is not None:
        os.sched_setaffinity(0, {pin.load_cpu})


# --------------------------------------------------------------------------- nginx


def nginx_common(tmp: Path, name: str) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {tmp / name / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\n"
        f"pid {tmp / name / 'nginx.pid'};\n"
        f"error_log {tmp / name / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n"
        "    sendfile on;\n"
        "    tcp_nodelay on;\n"
        "    keepalive_timeout 75s;\n"
        "    keepalive_requests 1000000;\n"
        f"{temp}\n"
    )


def start_nginx(
    children: Children, tmp: Path, nginx: str, name: str, conf: str, cpu: list[str]
) -> None:
    folder = tmp / name
    folder.mkdir()
    conf_path = folder / "nginx.conf"
    conf_path.write_text(conf)
    cmd = [*cpu, nginx, "-p", str(folder), "-c", str(conf_path), "-e", str(folder / "error.log")]
    children.start(name, [*cmd, "-g", "daemon off;"])


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    non_2xx: int
    other_cpu_pct: float | None = None  # the proxy's CPU busy with processes not the proxy's
    proxy_cpu_us: float | None = None  # the proxy's own CPU time per request, microseconds


_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    latency = {
        pct: re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
        for pct in ("50", "99")
    }
    if not rps or not total or not latency["50"] or not latency["99"]:
        raise BenchError(f"could not parse wrk output:\n{output}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=to_ms(*latency["50"].groups()),
        p99_ms=to_ms(*latency["99"].groups()),
        requests=int(total.group(1)),
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run_wrk(wrk: str, pin: Pinning, script: Path, url: str, conns: int, seconds: int) -> WrkResult:
    cmd = [*pin.load, wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script)]
    try:
        done = subprocess.run(
            [*cmd, url], capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(cmd)}") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout)


# --------------------------------------------------------------------------- other load


def cpu_busy_ticks(cpu: int) -> int:
    """Ticks CPU `cpu` spent not idle (user..steal, less idle and iowait), from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:9]]
            return sum(values) - values[3] - values[4]
    return 0


def group_cpu_ticks(pgid: int | None) -> int:
    """utime + stime of every live process in a process group (0 for None)."""
    total = 0
    if pgid is None:
        return total
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
    return total


class OtherCpu:
    """How busy the proxy's CPU was with anything but the proxy, as a % of elapsed time.

    On a shared machine this says how far a figure can be trusted: the proxy is pinned to
    its CPU, but other people's processes are not kept off it."""

    def __init__(self, cpu: int | None, pgid: int | None) -> None:
        self.cpu, self.pgid = cpu, pgid
        self.pct: float | None = None
        self.own_seconds: float | None = None  # CPU time of the proxy's process group

    def __enter__(self) -> OtherCpu:
        if self.cpu is not None:
            self._busy, self._own = cpu_busy_ticks(self.cpu), group_cpu_ticks(self.pgid)
            self._began = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cpu is None:
            return
        busy = cpu_busy_ticks(self.cpu) - self._busy
        own = group_cpu_ticks(self.pgid) - self._own
        ticks = os.sysconf("SC_CLK_TCK")
        self.own_seconds = own / ticks
        elapsed = (time.monotonic() - self._began) * ticks
        self.pct = max(0.0, 100.0 * (busy - own) / elapsed) if elapsed > 0 else None
