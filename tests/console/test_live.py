"""The live updates see what another process saved: two gateways over one state file, as
two workers are, and a transition made by one reaches the other's watcher."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import respx

from cutover.console.live import Watcher, fingerprint
from tests.ops.conftest import TOKEN, make_gateway

pytestmark = pytest.mark.anyio


async def test_another_workers_transition_is_a_new_version(
    migrations_path: Path, router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    watched, other = make_gateway(migrations_path, router), make_gateway(migrations_path, router)
    watcher = Watcher(watched.control, poll=0.01)
    watcher.start()
    try:
        async with watcher.watching():
            first = await watcher.next_version(0, 5.0)
            assert first >= 1
            before = {d["name"]: d["phase"] for d in watcher.documents}
            assert before["trade-engine"] == "progressing"
            await other.control.pause("trade-engine")
            version = await watcher.next_version(first, 5.0)
            assert version > first
            after = {d["name"]: d["phase"] for d in watcher.documents}
            assert after == {**before, "trade-engine": "paused"}
            # Nothing changes: no new version (the time healthy moving is not a change).
            assert await watcher.next_version(version, 0.2) == version
    finally:
        await watcher.stop()
    assert watcher.closed


async def test_nobody_watching_nothing_is_polled(
    migrations_path: Path, router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    gateway = make_gateway(migrations_path, router)
    watcher = Watcher(gateway.control, poll=0.01)
    reads = 0
    real = watcher.read

    async def counted() -> list:
        nonlocal reads
        reads += 1
        return await real()

    watcher.read = counted  # type: ignore[method-assign]
    watcher.start()
    await asyncio.sleep(0.1)
    assert reads == 0
    async with watcher.watching():
        await watcher.next_version(0, 5.0)
    assert reads >= 1
    await watcher.stop()


async def test_a_new_sample_is_a_new_version(
    migrations_path: Path, router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", TOKEN)
    sampled = [1.0]
    watcher = Watcher(make_gateway(migrations_path, router).control, poll=0.01,
                      tick=lambda: sampled[-1])  # fmt: skip
    watcher.start()
    try:
        async with watcher.watching():
            first = await watcher.next_version(0, 5.0)
            assert await watcher.next_version(first, 0.1) == first
            sampled.append(11.0)
            assert await watcher.next_version(first, 5.0) > first
    finally:
        await watcher.stop()


def test_the_fingerprint_ignores_what_moves_by_itself() -> None:
    doc = {"name": "m", "phase": "progressing", "healthy_for": 1.0, "next_promotion_in": 9.0}
    moved = {**doc, "healthy_for": 2.0, "next_promotion_in": 8.0}
    assert fingerprint([doc]) == fingerprint([moved])
    assert fingerprint([doc]) != fingerprint([{**doc, "phase": "paused"}])
