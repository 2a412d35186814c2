"""In-process fixtures of the ops tests: a gateway over respx-mocked backends, read from a
config file (today's single-rollout config, or one of two migrations), and a TestClient
that reaches both its listeners."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
import yaml
from starlette.testclient import TestClient

from cutover.config import load_settings
from cutover.ops.gateway import Gateway
from cutover.ops.listener import Listeners
from tests.conftest import LEGACY_URL, NEW_URL
from tests.migrations import STRATEGIES, TRADE_ENGINE

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROXY = "http://testserver:8080"
ADMIN = "http://testserver:9180"
WEBHOOK = "http://hooks.test/cutover"


def write_config(path: Path, **sections) -> None:
    """Today's config (one implicit migration, ``default``), with ``sections`` replacing
    whole top-level sections (None: left out)."""
    config = {
        "backends": {"legacy": {"url": LEGACY_URL}, "new": {"url": NEW_URL}},
        "split": {"weight": 10, "sticky": "header:X-User-Id"},
        "rollout": {"stages": [10, 50, 100], "hold": 300},
        "guard": {"interval": 60, "webhook": WEBHOOK},
        "state": {"path": str(path.parent / "state.json")},
        "usage": {"path": str(path.parent / "usage.sqlite3")},
        **sections,
    }
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}))


def write_migrations(path: Path, *migrations: dict, **sections) -> None:
    """A config of ``migrations`` (by default trade-engine and strategies), each with its own
    rollout and weight: no top-level rollout, no split.weight."""
    write_config(
        path,
        split={"sticky": "header:X-User-Id"},
        rollout=None,
        migrations=list(migrations or (TRADE_ENGINE, STRATEGIES)),
        **sections,
    )


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.MockRouter(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
        router.route(url__startswith=NEW_URL).respond(200, text="new")
        router.post(WEBHOOK).respond(204)
        yield router


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "cutover.yaml"
    write_config(path)
    return path


def make_gateway(config_path: Path, router: respx.MockRouter) -> Gateway:
    transport = httpx.MockTransport(router.async_handler)
    return Gateway(
        load_settings(config_path),
        config_path=config_path,
        transport=transport,
        side_transport=transport,
    )


@pytest.fixture
def gateway(config_path: Path, router: respx.MockRouter, monkeypatch) -> Gateway:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    return make_gateway(config_path, router)


@pytest.fixture
def migrations_path(tmp_path: Path) -> Path:
    path = tmp_path / "cutover.yaml"
    write_migrations(path)
    return path


@pytest.fixture
def gateway2(migrations_path: Path, router: respx.MockRouter, monkeypatch) -> Gateway:
    """A gateway of two migrations: trade-engine and strategies."""
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    return make_gateway(migrations_path, router)


class ByPort:
    """Both listeners under one TestClient (it has no sockets, so no listening socket to
    tell them apart): requests to port 9180 go to the admin app, the rest and the lifespan
    to what `cutover run` serves on the proxy socket."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.listeners = Listeners(gateway)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["server"][1] == 9180:
            await self.gateway.admin(scope, receive, send)
        else:
            await self.listeners(scope, receive, send)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(ByPort(gateway)) as client:
        yield client


@pytest.fixture
def client2(gateway2: Gateway) -> Iterator[TestClient]:
    with TestClient(ByPort(gateway2)) as client:
        yield client
