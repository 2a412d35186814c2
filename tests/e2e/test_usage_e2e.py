"""The usage report end to end with real processes: the demo backends and ``cutover run``,
three clients identified by API key calling a deprecated migration's ``from`` across a
restart of the proxy (the SQLite file persists), the report through ``cutover usage`` as a
subprocess in all three formats and through the admin API, and the keys never in the file."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import (
    Backends,
    ProxyPorts,
    ProxyProcess,
    clean_env,
    cutover_command,
    running_backends,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "e2e-admin-token-usage-0123456789"
FAULTS_TOKEN = "e2e-faults-token-usage-012345678"
HASH_KEY = "e2e-usage-hash-key-0123456789abcdef"
KEYS = {  # API key → calls before and after the restart
    "sk_live_alpha_000000000001": (3, 1),
    "sk_live_bravo_000000000002": (2, 0),
    "sk_live_charlie_0000000003": (1, 2),
}
PATH = "/api/v1/strategies"
DEADLINE = 15.0
MIGRATION = {
    "name": "strategies",
    "match": {"prefix": PATH},
    "from": "legacy",
    "to": "new",
    "deprecation": {"deprecated_at": "2026-01-01", "sunset_at": "2027-06-01"},
}


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    with running_backends(tmp_path_factory.mktemp("backends"), FAULTS_TOKEN) as running:
        yield running


def config_for(backends: Backends, ports: ProxyPorts, tmp_path: Path) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {"legacy": {"url": backends.legacy.url}, "new": {"url": backends.new.url}},
        "migrations": [MIGRATION],
        "clients": {"identify": "api_key:X-API-Key"},
        "usage": {"path": str(tmp_path / "usage.sqlite3"), "flush_interval": 0.2},
        "state": {"path": str(tmp_path / "state.json")},
    }


@pytest.fixture
def proxy(backends: Backends, tmp_path: Path) -> Iterator[ProxyProcess]:
    ports = ProxyPorts.pick()
    config_path = tmp_path / "cutover.yaml"
    write_config(config_path, config_for(backends, ports, tmp_path))
    proxy = ProxyProcess(tmp_path, config_path, ports, ADMIN_TOKEN)
    proxy.env["CUTOVER_CLIENTS__HASH_KEY"] = HASH_KEY
    proxy.companions = [backends.legacy, backends.new]
    try:
        yield proxy.start()
    finally:
        proxy.close()


def send(proxy: ProxyProcess, round_: int) -> None:
    with httpx.Client(base_url=proxy.url, trust_env=False, timeout=5.0) as client:
        for key, calls in KEYS.items():
            for _ in range(calls[round_]):
                response = client.get(PATH, headers={"X-API-Key": key, "User-Agent": "sdk/3"})
                assert response.status_code == 200
                assert response.headers["x-cutover-backend"] == "legacy"


def calls_by_hint(proxy: ProxyProcess) -> dict[str, int]:
    response = proxy.admin.get("/migrations/strategies/usage", params={"since": "1d"})
    assert response.status_code == 200, response.text
    return {client["hint"]: client["calls"] for client in response.json()["clients"]}


def usage_cli(proxy: ProxyProcess, *options: str) -> str:
    env = clean_env(CUTOVER_ADMIN_URL=proxy.admin_url, CUTOVER_ADMIN_TOKEN=ADMIN_TOKEN)
    done = subprocess.run(
        [*cutover_command(), "usage", "strategies", *options],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_usage_across_a_restart_and_the_report(proxy: ProxyProcess, tmp_path: Path) -> None:
    send(proxy, 0)
    before = {key[-4:]: calls[0] for key, calls in KEYS.items()}
    wait_until(lambda: calls_by_hint(proxy) == before, DEADLINE, "the first counts", proxy)
    proxy.stop()  # SIGTERM: the last counts are flushed at shutdown
    assert (tmp_path / "usage.sqlite3").exists()

    proxy.restart()
    send(proxy, 1)
    total = {key[-4:]: sum(calls) for key, calls in KEYS.items()}
    wait_until(lambda: calls_by_hint(proxy) == total, DEADLINE, "the counts after", proxy)
    assert proxy.metric("cutover_deprecated_requests_total", migration="strategies") == 3

    document = json.loads(usage_cli(proxy, "--format", "json", "--since", "1d"))
    assert {c["hint"]: c["calls"] for c in document["clients"]} == total
    assert all(c["client"].startswith("h:") for c in document["clients"])
    assert {c["user_agent"] for c in document["clients"]} == {"sdk/3"}
    rows = list(csv.DictReader(io.StringIO(usage_cli(proxy, "--format", "csv"))))
    assert sorted((r["hint"], r["calls"]) for r in rows) == sorted(
        (hint, str(calls)) for hint, calls in total.items()
    )
    table = usage_cli(proxy).splitlines()
    assert table[0].startswith("MIGRATION")
    assert [line.split()[3] for line in table[1:]] == ["4", "3", "2"]  # busiest first
    csv_answer = proxy.admin.get("/usage", params={"format": "csv"})
    assert csv_answer.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(csv_answer.text)))) == 3

    proxy.stop()
    contents = b"".join(path.read_bytes() for path in tmp_path.glob("usage.sqlite3*"))
    for key in KEYS:
        assert key.encode() not in contents
