"""The guard as a task of one process (``GuardRunner``): built for the settings with the
right source and scraper and one judge per migration, one loop at a time, stopped with its
clients closed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cutover.ops.guard_runner import BuiltGuard, GuardRunner, build_judges
from cutover.request.metrics import Metrics
from cutover.rollout.coordination import Coordination
from cutover.rollout.guard_status import EvaluationFile
from cutover.rollout.registry import Migrations
from cutover.rollout.source_prometheus import PrometheusSource
from cutover.rollout.sources import EmbeddedSource
from cutover.rollout.state import StateStore
from tests.conftest import LEGACY_URL, NEW_URL, make_settings

pytestmark = pytest.mark.anyio


def runner(tmp_path: Path, **sections: Any) -> tuple[GuardRunner, Any]:
    settings = make_settings(state={"path": str(tmp_path / "state.json")}, **sections)
    migrations = Migrations.restore(settings, StateStore(settings.state.path))
    guards = GuardRunner(
        migrations,
        Metrics(),
        Coordination(settings.state.path),
        EvaluationFile(settings.state.path),
    )
    return guards, settings


def test_a_judge_per_migration_with_its_own_thresholds(tmp_path: Path) -> None:
    backends = {
        "legacy": {"url": LEGACY_URL},
        "new": {"url": NEW_URL, "metrics_url": f"{NEW_URL}/metrics"},
        "engine": {"url": "http://engine.test"},
    }
    migrations = [
        {"name": "trade-engine", "match": {"prefix": "/api/v1/backtests/"}, "from": "legacy",
         "to": "new", "guard": {"max_latency_ratio": 1.5, "failures_to_rollback": 3},
         "shadow": {"sample": 0.2}},
        {"name": "strategies", "match": {"prefix": "/api/v1/strategies"}, "from": "new",
         "to": "engine"},
    ]  # fmt: skip
    guards, settings = runner(
        tmp_path, backends=backends, migrations=migrations, guard={"max_latency_ratio": 2}
    )
    trade, strategies = build_judges(settings, guards.migrations)
    assert (trade.name, trade.source, trade.target) == ("trade-engine", "legacy", "new")
    assert (strategies.name, strategies.source, strategies.target) == (
        "strategies", "new", "engine",
    )  # fmt: skip
    assert trade.rollout is guards.migrations.get("trade-engine")
    assert (trade.config.max_latency_ratio, trade.config.failures_to_rollback) == (1.5, 3)
    assert (strategies.config.max_latency_ratio, strategies.config.failures_to_rollback) == (2, 2)
    # Memory only where `to` exposes it; the shadow check only where requests are mirrored.
    assert trade.memory and not strategies.memory
    assert trade.shadow_config is settings.shadow and strategies.shadow_config is None


def test_the_shadow_check_follows_the_routes_mirrored(tmp_path: Path) -> None:
    def judge(**sections: Any) -> Any:
        guards, settings = runner(tmp_path, **sections)
        [default] = build_judges(settings, guards.migrations)
        return default

    assert judge().shadow_config is None
    assert judge(routes=[{"prefix": "/x", "shadow": {"sample": 1.0}}]).shadow_config is not None
    off = [{"prefix": "/x", "shadow": {"sample": 1.0, "enabled": False}}]
    assert judge(routes=off).shadow_config is None


async def test_the_embedded_source_without_scrapes_has_nothing_to_close(tmp_path: Path) -> None:
    guards, settings = runner(tmp_path)
    built = guards.build(settings)
    assert built.closers == [] and built.guard.scraper is None
    assert isinstance(built.guard.observe.__self__, EmbeddedSource)  # type: ignore[attr-defined]
    [judge] = built.guard.judges
    assert not judge.memory and judge.shadow_config is None
    assert built.guard.shared is guards.evaluations
    assert built.guard.coordination is guards.coordination


async def test_prometheus_and_a_scrape_each_have_a_client_to_close(tmp_path: Path) -> None:
    guards, settings = runner(
        tmp_path,
        backends={
            "legacy": {"url": LEGACY_URL},
            "new": {"url": NEW_URL, "metrics_url": f"{NEW_URL}/metrics"},
        },
        guard={"source": "prometheus"},
        routes=[{"prefix": "/x", "shadow": {"sample": 1.0}}],
    )
    built = guards.build(settings)
    source = built.guard.observe.__self__  # type: ignore[attr-defined]
    assert isinstance(source, PrometheusSource)
    assert built.guard.scraper is not None and built.guard.scraper.urls == {
        "new": f"{NEW_URL}/metrics"
    }
    # Prometheus brings its own memory reading; the scrape only feeds the gauge.
    [judge] = built.guard.judges
    assert judge.memory and not built.guard.memory_from_scrape
    assert judge.shadow_config is not None
    assert built.closers == [source.aclose, built.guard.scraper.aclose]
    await built.discard()


async def test_one_loop_at_a_time_and_stop_closes_its_clients(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    guards, settings = runner(tmp_path, guard={"interval": 60})
    closed: list[str] = []

    async def close() -> None:
        closed.append("source")

    async def broken() -> None:
        raise OSError("already gone")

    built = guards.build(settings)
    built.closers += [broken, close]
    assert guards.start(built) is built.guard and guards.guard is built.guard
    with pytest.raises(AssertionError, match="one guard loop at a time"):
        guards.start(guards.build(settings))
    await asyncio.sleep(0)
    await guards.stop()
    assert closed == ["source"]  # a closer that fails is logged, the others still run
    assert "closing the guard's metrics source failed" in caplog.text
    await guards.stop()  # nothing running: nothing to do
    guards.start(BuiltGuard(guards.build(settings).guard))  # and a new one may start
    await guards.stop()


async def test_with_redis_every_host_shares_its_counters_and_prometheus_needs_none(
    tmp_path: Path,
) -> None:
    import redis.asyncio as aioredis

    from cutover.rollout.fleet_source import FleetSource
    from cutover.rollout.redis_keys import RedisKeys
    from tests.redis_server import running_redis

    file_guards, file_settings = runner(tmp_path)
    assert file_guards.build(file_settings).guard.share is None  # one host: nothing to share
    with running_redis(tmp_path / "redis") as server:
        client = aioredis.Redis.from_url(server.url)
        state = {"backend": "redis", "url": server.url, "key_prefix": "cutover:t",
                 "host_id": "edge-1"}  # fmt: skip
        settings = make_settings(state=state, guard={"interval": 2})
        migrations = Migrations.restore(settings, StateStore(tmp_path / "state.json"))
        guards = GuardRunner(
            migrations, Metrics(), Coordination(tmp_path / "state.json"),
            EvaluationFile(tmp_path / "state.json"), redis=client, host="edge-1",
        )  # fmt: skip
        try:
            built = guards.build(settings)
            assert isinstance(built.guard.observe.__self__, FleetSource)  # type: ignore[attr-defined]
            assert built.guard.share is not None
            await built.guard.share()
            key = RedisKeys("cutover:t").counters("edge-1")
            assert 0 < await client.pttl(key) <= 6000  # three guard intervals
            prometheus = settings.model_copy(
                update={"guard": settings.guard.model_copy(update={"source": "prometheus"})}
            )
            built = guards.build(prometheus)
            assert built.guard.share is None  # Prometheus already sees every host
            await built.discard()
        finally:
            await client.aclose()
