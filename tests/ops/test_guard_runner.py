"""The guard as a task of one process (``GuardRunner``): built for the settings with the
right source and scraper, one loop at a time, stopped with its clients closed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cutover.ops.guard_runner import BuiltGuard, GuardRunner, shadowing
from cutover.request.metrics import Metrics
from cutover.rollout.coordination import Coordination
from cutover.rollout.guard_status import EvaluationFile
from cutover.rollout.machine import Rollout
from cutover.rollout.source_prometheus import PrometheusSource
from cutover.rollout.sources import EmbeddedSource
from cutover.rollout.state import StateStore
from tests.conftest import LEGACY_URL, NEW_URL, make_settings

pytestmark = pytest.mark.anyio


def runner(tmp_path: Path, **sections: Any) -> tuple[GuardRunner, Any]:
    settings = make_settings(state={"path": str(tmp_path / "state.json")}, **sections)
    rollout = Rollout.restore(settings, StateStore(settings.state.path))
    guards = GuardRunner(
        rollout, Metrics(), Coordination(settings.state.path), EvaluationFile(settings.state.path)
    )
    return guards, settings


def test_shadowing() -> None:
    assert not shadowing(make_settings())
    assert shadowing(make_settings(routes=[{"prefix": "/x", "shadow": {"sample": 1.0}}]))
    off = [{"prefix": "/x", "shadow": {"sample": 1.0, "enabled": False}}]
    assert not shadowing(make_settings(routes=off))


async def test_the_embedded_source_without_scrapes_has_nothing_to_close(tmp_path: Path) -> None:
    guards, settings = runner(tmp_path)
    built = guards.build(settings)
    assert built.closers == [] and built.guard.scraper is None
    assert isinstance(built.guard.observe.__self__, EmbeddedSource)  # type: ignore[attr-defined]
    assert not built.guard.memory_enabled and not built.guard.shadow_enabled
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
    assert built.guard.memory_enabled and not built.guard.memory_from_scrape
    assert built.guard.shadow_enabled
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
