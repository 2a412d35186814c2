from __future__ import annotations

import functools
import logging
import os
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import trustme
from starlette.testclient import TestClient

from cutover.config import Settings, parse_settings
from cutover.ops.assembly import create_app
from tests.certificates import CertFiles
from tests.redis_server import RedisServer, running_redis

LEGACY_URL = "http://legacy.test"
NEW_URL = "http://new.test"


@pytest.fixture(autouse=True, scope="session")
def _hermetic_environment() -> Iterator[None]:
    """Settings read CUTOVER_* variables; a developer's own must not leak into tests."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("CUTOVER_") or name == "NEW_BACKEND_ADMIN_TOKEN":
                patch.delenv(name)
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_default_tls_context() -> Iterator[None]:
    """Every httpx client the tests make builds its default TLS context anew, loading the CA
    bundle: about 60 ms a client, and the tests make thousands (a poll, a request on a new
    connection). The default context is built once and shared; a client given its own
    ``verify`` (a test CA) still gets exactly that."""
    transports = httpx._transports.default  # where both transports call it
    build = transports.create_ssl_context

    @functools.cache
    def default_context(trust_env: bool) -> ssl.SSLContext:
        return build(True, None, trust_env)

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is True and cert is None:
            return default_context(trust_env)
        return build(verify, cert, trust_env)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transports, "create_ssl_context", create_ssl_context)
        yield


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A test that runs ``cutover run`` in process configures logging for the whole process
    (uvicorn's dictConfig: handlers, levels, propagation); the next test's caplog must still
    see every logger, so each logger is put back as it was."""
    manager = logging.Logger.manager
    loggers = [logging.getLogger(), *(
        logger for logger in manager.loggerDict.values() if isinstance(logger, logging.Logger)
    )]  # fmt: skip
    saved = [(lg, lg.disabled, lg.propagate, lg.level, list(lg.handlers)) for lg in loggers]
    yield
    for logger, disabled, propagate, level, handlers in saved:
        logger.disabled, logger.propagate, logger.level = disabled, propagate, level
        logger.handlers[:] = handlers
    known = {id(logger) for logger in loggers}
    for logger in list(manager.loggerDict.values()):
        # Made during the test (by the dictConfig): back to a plain logger that propagates.
        if isinstance(logger, logging.Logger) and id(logger) not in known:
            logger.disabled, logger.propagate, logger.level = False, True, logging.NOTSET
            logger.handlers.clear()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of the test's own (``tests/redis_server.py``)."""
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def anyio_backend() -> str:
    """Tests marked ``anyio`` run on asyncio (the proxy's loop), not on trio as well."""
    return "asyncio"


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def make_settings(**sections: Any) -> Settings:
    base = {"backends": {"legacy": {"url": LEGACY_URL}, "new": {"url": NEW_URL}}}
    return parse_settings(deep_merge(base, sections))


@pytest.fixture
def upstreams() -> Iterator[respx.MockRouter]:
    """One respx router standing in for both backends; every request must be mocked."""
    with respx.MockRouter(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
def proxy(upstreams: respx.MockRouter) -> Iterator[Callable[..., TestClient]]:
    """Build the gateway over the respx router: ``proxy(split={"weight": 50})``."""
    clients: list[TestClient] = []

    def build(**sections: Any) -> TestClient:
        app = create_app(
            make_settings(**sections), transport=httpx.MockTransport(upstreams.async_handler)
        )
        client = TestClient(app, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def ca() -> trustme.CA:
    """A test certificate authority (the TLS tests')."""
    return trustme.CA()


@pytest.fixture
def files(tmp_path: Path, ca: trustme.CA) -> CertFiles:
    """A certificate for 127.0.0.1 and localhost signed by ``ca``, and its key, on disk."""
    files = CertFiles(tmp_path)
    files.install(ca.issue_cert("127.0.0.1", "localhost"))
    return files
