"""A migration's deprecation block in ``GET /migrations/{name}``: days to sunset, where the
lifecycle is, the window in force, the next brownout, the 7-day clients hook; and a reload
that changes the brownouts changes what the proxy refuses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import respx
from starlette.testclient import TestClient

from cutover.config import DeprecationConfig, load_settings
from cutover.ops.gateway import Gateway
from cutover.ops.lifecycle_status import deprecation_status
from tests.clocks import Clock
from tests.ops.conftest import ADMIN, AUTH, PROXY, TOKEN, ByPort, write_config

MONDAY = datetime(2027, 4, 5, 14, tzinfo=UTC).timestamp()
DEPRECATION = {
    "deprecated_at": "2026-12-01",
    "sunset_at": "2027-06-01",
    "brownouts": [{"schedule": "0 14 * * 1", "duration": "1h", "from": "2027-04-01"}],
    "after_sunset": "gone",
}


def status(now: float, **extra: object) -> dict:
    config = DeprecationConfig.model_validate({**DEPRECATION, **extra})
    block = deprecation_status(config, None, now, clients_7d=None)
    assert block is not None
    return block


def test_between_windows_the_next_one_and_the_days_left() -> None:
    block = status(MONDAY - 3600)
    assert block["lifecycle"] == "deprecated" and block["window_end"] is None
    window = {"start": "2027-04-05T14:00:00Z", "end": "2027-04-05T15:00:00Z"}
    assert block["next_brownout"] == window
    assert block["days_to_sunset"] == 57  # 56 days and 23 hours, rounded up
    assert (block["sunset_at"], block["after_sunset"], block["dry_run"]) == (
        "2027-06-01T00:00:00Z", "gone", False,
    )  # fmt: skip


def test_in_a_window_its_end_and_the_one_after() -> None:
    block = status(MONDAY + 60)
    assert (block["lifecycle"], block["window_end"]) == ("brownout", "2027-04-05T15:00:00Z")
    assert block["next_brownout"]["start"] == "2027-04-12T14:00:00Z"


def test_after_the_sunset_nothing_is_next() -> None:
    block = status(datetime(2027, 6, 2, tzinfo=UTC).timestamp())
    assert (block["lifecycle"], block["days_to_sunset"], block["next_brownout"]) == (
        "sunset", 0, None,
    )  # fmt: skip


def test_the_admin_document_carries_the_block(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    path = tmp_path / "cutover.yaml"
    write_config(path, deprecation=DEPRECATION, rollout=None, split={"weight": 0})
    with respx.MockRouter(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(url__startswith="http://legacy.test").respond(200, text="legacy")
        transport = httpx.MockTransport(router.async_handler)
        clock = Clock(MONDAY + 60)
        gateway = Gateway(load_settings(path), config_path=path, transport=transport,
                          side_transport=transport, clock=clock)  # fmt: skip
        gateway.clients_7d = lambda name: {"default": 3}.get(name)
        with TestClient(ByPort(gateway)) as client:
            document = client.get(f"{ADMIN}/migrations/default", headers=AUTH).json()
            block = document["deprecation"]
            assert (block["lifecycle"], block["clients_7d"]) == ("brownout", 3)
            assert block["window_end"] == "2027-04-05T15:00:00Z"
            assert client.get(f"{PROXY}/x").status_code == 410
            # A reload without brownouts: the proxy serves again, the document says so.
            write_config(path, deprecation={**DEPRECATION, "brownouts": []}, rollout=None,
                         split={"weight": 0})  # fmt: skip
            client.portal.call(gateway.apply, load_settings(path))  # type: ignore[union-attr]
            assert client.get(f"{PROXY}/x").text == "legacy"
            block = client.get(f"{ADMIN}/migrations/default", headers=AUTH).json()["deprecation"]
            assert (block["lifecycle"], block["next_brownout"]) == ("deprecated", None)
