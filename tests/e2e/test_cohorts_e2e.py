"""Cohorts end to end with real processes: both demo backends and ``cutover run`` on free
ports. A migration at weight 0 sends its query, header and cookie cohorts to new, a users
file's sticky keys too; a SIGHUP re-reads the users file; a rollback sends the cohorts back
to legacy, except the one that survives it. Every wait polls with a deadline."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import (
    Backends,
    ProxyPorts,
    ProxyProcess,
    running_backends,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "e2e-admin-token-cohorts-0123456"
FAULTS_TOKEN = "e2e-faults-token-cohorts-012345"
PATH = "/api/v1/strategies"
NAME = "strategies"
DEADLINE = 15.0


def config_for(backends: Backends, ports: ProxyPorts, tmp_path: Path) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {"legacy": {"url": backends.legacy.url}, "new": {"url": backends.new.url}},
        "migrations": [{
            "name": NAME, "match": {"prefix": PATH}, "from": "legacy", "to": "new",
            "weight": 0, "sticky": "header:X-User-Id",
            "cohorts": [
                {"query": {"use_new_executor": "true"}, "backend": "new", "name": "executor"},
                {"query": {"version": {"regex": "2|3"}}, "backend": "new"},
                {"header": {"X-Beta-Tester": "yes"}, "backend": "new", "name": "beta"},
                {"cookie": {"beta": "1"}, "backend": "new", "survive_rollback": True},
                {"users_file": str(tmp_path / "canary-users.txt"), "backend": "new",
                 "name": "canary"},
            ],
        }],
        "state": {"path": str(tmp_path / "state.json")},
    }  # fmt: skip


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyProcess]:
    with running_backends(tmp_path, FAULTS_TOKEN) as backends:
        (tmp_path / "canary-users.txt").write_text("# canary group\nalice\n")
        ports = ProxyPorts.pick()
        config_path = tmp_path / "cutover.yaml"
        write_config(config_path, config_for(backends, ports, tmp_path))
        started = ProxyProcess(tmp_path, config_path, ports, ADMIN_TOKEN)
        started.companions = [backends.legacy, backends.new]
        try:
            yield started.start()
        finally:
            started.close()


def backend(client: httpx.Client, query: str = "", **headers: str) -> str:
    response = client.get(PATH + query, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["x-cutover-backend"]


def test_cohorts_route_by_query_header_cookie_and_a_reloaded_users_file(
    proxy: ProxyProcess, tmp_path: Path
) -> None:
    with httpx.Client(base_url=proxy.url, trust_env=False, timeout=5.0) as client:
        assert backend(client) == "legacy"  # weight 0: only cohorts reach new
        assert backend(client, "?use%5Fnew%5Fexecutor=%74rue") == "new"
        assert backend(client, "?version=1&version=3") == "new"  # repeated: any value
        assert backend(client, "?version=23") == "legacy"  # the regex is anchored
        assert backend(client, **{"X-Beta-Tester": "yes"}) == "new"
        assert backend(client, Cookie="theme=dark; beta=1") == "new"
        assert backend(client, **{"X-User-Id": "alice"}) == "new"
        assert backend(client, **{"X-User-Id": "bob"}) == "legacy"

        # The users file is read with the config: a SIGHUP re-reads it.
        (tmp_path / "canary-users.txt").write_text("bob\n")
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: backend(client, **{"X-User-Id": "bob"}) == "new", DEADLINE,
                   "bob in the canary group after the reload", proxy)  # fmt: skip
        assert backend(client, **{"X-User-Id": "alice"}) == "legacy"

        # A rollback sends the cohorts to legacy, except the one that survives it.
        response = proxy.admin.post(f"/migrations/{NAME}/rollback", json={"reason": "e2e"})
        assert response.status_code == 200, response.text
        wait_until(lambda: backend(client, **{"X-Beta-Tester": "yes"}) == "legacy", DEADLINE,
                   "the beta testers on legacy after the rollback", proxy)  # fmt: skip
        assert backend(client, **{"X-User-Id": "bob"}) == "legacy"
        assert backend(client, Cookie="beta=1") == "new"  # survive_rollback

    def counted(backend_name: str, cohort: str) -> float:
        return proxy.metric("cutover_requests_total", migration=NAME, backend=backend_name,
                            cohort=cohort)  # fmt: skip

    assert counted("new", "executor") == 1
    assert counted("new", "1") == 1
    assert counted("legacy", "1") == 0
    assert counted("new", "3") == 2
    assert counted("legacy", "beta") >= 1
    assert counted("new", "canary") >= 2  # alice, then bob after the reload
