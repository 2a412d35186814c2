"""A brownout end to end with real processes: both demo backends and ``cutover run``, one
migration at 50 % with sticky users, a brownout window that began a minute ago. The users
the weight sends to legacy get 410 with the brownout problem; the users on new are served;
the admin API and the metrics say so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cutover.request.splitter import bucket
from tests.processes import ProxyPorts, ProxyProcess, running_backends, write_config

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "e2e-admin-token-brownout-0123456"
FAULTS_TOKEN = "e2e-faults-token-brownout-012345"
PATH = "/api/v1/strategies"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_active_brownout_refuses_legacy_bound_requests(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with running_backends(tmp_path, FAULTS_TOKEN) as backends:
        ports = ProxyPorts.pick()
        config_path = tmp_path / "cutover.yaml"
        write_config(config_path, {
            "listen": {"host": "127.0.0.1", "port": ports.listen},
            "admin": {"host": "127.0.0.1", "port": ports.admin},
            "backends": {"legacy": {"url": backends.legacy.url}, "new": {"url": backends.new.url}},
            "migrations": [{
                "name": "strategies", "match": {"prefix": PATH}, "from": "legacy", "to": "new",
                "sticky": "header:X-User-Id", "weight": 50,
                "deprecation": {
                    "deprecated_at": stamp(now - timedelta(days=1)),
                    "sunset_at": stamp(now + timedelta(days=30)),
                    "link": "https://example.com/migration-guide",
                    "brownouts": [{"start": stamp(now - timedelta(minutes=1)), "duration": "1h"}],
                },
            }],
            "state": {"path": str(tmp_path / "state.json")},
        })  # fmt: skip
        proxy = ProxyProcess(tmp_path, config_path, ports, ADMIN_TOKEN)
        proxy.companions = [backends.legacy, backends.new]
        try:
            proxy.start()
            users = [f"user-{i}" for i in range(40)]
            to_new = [u for u in users if bucket(u.encode()) < 5000]
            to_legacy = [u for u in users if u not in to_new]
            assert to_new and to_legacy
            with httpx.Client(base_url=proxy.url, timeout=5.0, trust_env=False) as client:
                for user in to_new:
                    response = client.get(PATH, headers={"X-User-Id": user})
                    assert response.status_code == 200, proxy.describe()
                    assert response.headers["x-cutover-backend"] == "new"
                for user in to_legacy:
                    response = client.get(PATH, headers={"X-User-Id": user})
                    assert response.status_code == 410, (response.text, proxy.describe())
                    problem = response.json()
                    assert problem["type"] == "urn:cutover:problem:brownout"
                    assert problem["window_end"] == stamp(now + timedelta(minutes=59))
                    assert problem["link"] == "https://example.com/migration-guide"
                    assert response.headers["deprecation"].startswith("@")
            refused = proxy.metric("cutover_brownout_requests_total", migration="strategies",
                                   outcome="refused")  # fmt: skip
            assert refused == len(to_legacy)
            block = proxy.admin.get("/migrations/strategies").json()["deprecation"]
            assert block["lifecycle"] == "brownout"
            assert block["window_end"] == stamp(now + timedelta(minutes=59))
            assert block["days_to_sunset"] == 30
        finally:
            proxy.close()
