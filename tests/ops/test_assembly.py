"""Assembling the proxy listener's app: upstream clients, the dual run, the breakers."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from cutover.config import ConfigError
from cutover.ops import assembly
from cutover.ops.assembly import build_breakers, build_shadower, build_upstreams, create_app
from cutover.request.metrics import Metrics
from cutover.request.mirror import DualRun
from cutover.vocabulary import BreakerState
from tests.conftest import make_settings

SHADOWED = [{"prefix": "/api/", "shadow": {"sample": 0.5}}]


def test_upstreams_over_a_transport_or_the_http1_client() -> None:
    settings = make_settings()
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    over_transport = build_upstreams(settings, transport)
    own_client = build_upstreams(settings, None)
    assert set(over_transport) == set(own_client) == {"legacy", "new"}
    assert all(isinstance(u, assembly.HttpxUpstream) for u in over_transport.values())
    assert all(isinstance(u, assembly.Http1Upstream) for u in own_client.values())
    assert own_client["new"].base_url == "http://new.test"


def test_no_shadower_unless_a_route_mirrors() -> None:
    assert build_shadower(make_settings(), {}, Metrics()) is None
    disabled = [{"prefix": "/api/", "shadow": {"enabled": False}}]
    assert build_shadower(make_settings(routes=disabled), {}, Metrics()) is None


def test_the_shadower_is_a_dual_run_writing_its_log(tmp_path) -> None:
    settings = make_settings(routes=SHADOWED, shadow={"log_path": str(tmp_path / "s.jsonl")})

    async def main() -> None:
        shadower = build_shadower(settings, {}, Metrics())
        assert isinstance(shadower, DualRun)
        await shadower.aclose()

    asyncio.run(main())
    assert (tmp_path / "s.jsonl").exists()


def test_a_shadow_log_that_cannot_be_opened_is_a_config_error(tmp_path) -> None:
    settings = make_settings(routes=SHADOWED, shadow={"log_path": str(tmp_path)})  # a directory
    with pytest.raises(ConfigError, match=r"shadow\.log_path: cannot open"):
        build_shadower(settings, {}, Metrics())


def test_no_breaker_when_disabled() -> None:
    assert build_breakers(make_settings(breaker={"enabled": False}), Metrics()) == {}


def test_a_breaker_in_front_of_each_backend_a_migration_moves_to() -> None:
    backends = {name: {"url": f"http://{name}.test"} for name in ("legacy", "new", "engine")}
    migrations = [
        {"name": "one", "match": {"prefix": "/one"}, "from": "legacy", "to": "new"},
        {"name": "two", "match": {"prefix": "/two"}, "from": "legacy", "to": "new"},
        {"name": "three", "match": {"prefix": "/three"}, "from": "new", "to": "engine"},
    ]
    settings = make_settings(backends=backends, migrations=migrations)
    breakers = build_breakers(settings, Metrics())
    assert list(breakers) == ["new", "engine"]  # one each, shared by the migrations to it
    assert breakers["new"] is not breakers["engine"]
    assert list(build_breakers(make_settings(), Metrics())) == ["new"]  # the default migration


def test_the_breakers_changes_reach_the_metrics_and_the_log(caplog) -> None:
    caplog.set_level(logging.INFO, logger="cutover.app")
    metrics = Metrics()
    breaker = build_breakers(make_settings(breaker={"failures": 1}), metrics)["new"]

    def state(name: str) -> float | None:
        labels = {"backend": "new", "state": name}
        return metrics.registry.get_sample_value("cutover_breaker_state", labels)

    assert [state(name) for name in BreakerState] == [1.0, 0.0, 0.0]
    assert breaker.allow()
    breaker.record(False)
    assert [state(name) for name in BreakerState] == [0.0, 1.0, 0.0]
    opened = metrics.registry.get_sample_value(
        "cutover_breaker_transitions_total", {"backend": "new", "state": "open"}
    )
    assert opened == 1
    [record] = [r for r in caplog.records if r.name == "cutover.app"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "circuit breaker on new: closed -> open"


def test_create_app_hands_the_parts_to_the_app(tmp_path) -> None:
    settings = make_settings(routes=SHADOWED, shadow={"log_path": str(tmp_path / "s.jsonl")})
    metrics = Metrics()

    async def main() -> None:
        app = create_app(settings, transport=httpx.MockTransport(lambda r: None), metrics=metrics)
        assert app.metrics is metrics
        assert app.forwarder.upstreams is app.upstreams
        assert app.forwarder.shadower is app.shadower is not None
        assert app.forwarder.breakers is app.breakers
        assert list(app.breakers) == ["new"]
        await app.shutdown()

    asyncio.run(main())
