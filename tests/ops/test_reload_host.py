"""A reload takes the new forwarding vocabulary and Host rules on the next request;
``listen.trusted_proxies`` (part of ``listen``) waits for a restart."""

from __future__ import annotations

from pathlib import Path

import respx
from starlette.testclient import TestClient

from cutover.config import load_settings
from cutover.ops.gateway import Gateway
from tests.conftest import LEGACY_URL, NEW_URL
from tests.ops.conftest import PROXY, write_config

# The gateway's migration splits at random: the override sends each request to legacy.
TO_LEGACY = {"Forwarded": "for=6.6.6.6", "X-Cutover-Backend": "legacy"}


def test_a_reload_changes_forwarded_and_preserve_host_but_not_trusted_proxies(
    client: TestClient, gateway: Gateway, config_path: Path, router: respx.MockRouter
) -> None:
    legacy = router.routes[0]
    client.get(f"{PROXY}/x", headers=TO_LEGACY)
    sent = legacy.calls.last.request.headers
    assert "forwarded" not in sent and sent["host"] == "legacy.test"

    backends = {"legacy": {"url": LEGACY_URL, "preserve_host": True}, "new": {"url": NEW_URL}}
    write_config(config_path, backends=backends, forwarded={"header": "rfc7239"},
                 listen={"trusted_proxies": ["0.0.0.0/0"]})  # fmt: skip
    client.portal.call(gateway.apply, load_settings(config_path))
    client.get(f"{PROXY}/x", headers=TO_LEGACY)
    sent = legacy.calls.last.request.headers
    assert sent["host"] == "testserver:8080"
    # testclient is no address, so no network holds it; and listen stays until a restart.
    assert gateway.settings.listen.trusted_proxies == []
    assert sent["forwarded"] == 'for=unknown;proto=http;host="testserver:8080"'
