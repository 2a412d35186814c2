"""Which app answers which socket, end to end against a real ``cutover run``: the proxy
socket only ever reaches the backends, the admin API only its own socket (``Listeners``
and ``AppListener``).

The backend is a small ASGI app in this process (``servers.serve``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import ProxyPorts, ProxyProcess, free_port, write_config
from tests.servers import serve

pytestmark = pytest.mark.e2e

TOKEN = "listener-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def backend(scope: Any, receive: Any, send: Any) -> None:
    """Answers ``one <path>`` to everything."""
    if scope["type"] != "http":
        return
    body = f"one {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def backend_url() -> Iterator[str]:
    with serve(backend) as url:
        yield url


def fresh_get(url: str, path: str) -> httpx.Response:
    """One request on a connection of its own (with workers, any of them may accept it)."""
    with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as client:
        return client.get(path, headers=AUTH)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_client_listener_never_reaches_the_admin_api(
    backend_url: str, tmp_path: Path, workers: int
) -> None:
    """listen on 127.0.0.1:P, admin on 127.0.0.2:P: one port, two listening sockets."""
    port = free_port()
    ports = ProxyPorts(port, port)
    path = tmp_path / "cutover.yaml"
    write_config(
        path,
        {
            "listen": {"host": "127.0.0.1", "port": ports.listen},
            "admin": {"host": "127.0.0.2", "port": ports.admin},
            "backends": {"legacy": {"url": backend_url}, "new": {"url": backend_url}},
            "state": {"path": str(tmp_path / "state.json")},
        },
    )
    proxy = ProxyProcess(tmp_path, path, ports, TOKEN, admin_host="127.0.0.2", workers=workers)
    try:
        proxy.start()
        for request_path in ("/status", "/metrics", "/readyz", "/healthz") * 3:
            response = fresh_get(proxy.url, request_path)
            assert (response.status_code, response.text) == (200, f"one {request_path}"), (
                response.text
            )
            assert response.headers["x-cutover-backend"] == "legacy"
        with httpx.Client(base_url=proxy.url, timeout=5.0, trust_env=False) as client:
            rollback = client.post("/rollout/rollback", json={"reason": "x"}, headers=AUTH)
        assert rollback.text == "one /rollout/rollback"
        # The admin API is where it was configured, and nothing above reached it.
        status = proxy.status()
        assert status["phase"] == "manual", status
        assert fresh_get(proxy.admin_url, "/readyz").json() == {"status": "ready"}
    finally:
        proxy.close()
