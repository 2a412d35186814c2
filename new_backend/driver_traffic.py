"""The ``cutover demo`` driver's traffic: a stream of backtest requests through the proxy, a
line a second on what served them and where the rollout is, and the fault it injects into
the new backend at 50 % when asked to."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from typing import Any

import httpx

from cutover.vocabulary import Actor, Phase
from cutover_demo.new_backend.driver_signals import StopSignals

STRATEGIES = ("sma_crossover", "rsi_mean_reversion", "momentum", "buy_and_hold")
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA")
FAULTS: dict[str, dict[str, Any]] = {
    "error-rate": {"error_rate": 0.3},
    "latency": {"extra_latency_ms": 120},
    "memory": {"leak_kb_per_request": 4096},
}


def execute_request() -> tuple[str, dict[str, object]]:
    body = {
        "strategy": random.choice(STRATEGIES),
        "symbol": random.choice(SYMBOLS),
        "start": "2021-01-01",
        "end": "2023-12-31",
        "initial_capital": 100_000,
    }
    return f"/api/v1/backtests/bt-{random.randrange(10_000)}/execute", body


def transition_line(transition: dict[str, Any]) -> str:
    return (
        f"  >>> {transition['from_phase']} {transition['from_weight']:g}% -> "
        f"{transition['to_phase']} {transition['to_weight']:g}%: "
        f"{transition['reason']} ({transition['actor']})"
    )


def status_line(elapsed: float, status: dict[str, Any], served: Counter[str]) -> str:
    """One second of the demo: the rollout's phase and weight, who served, the checks."""
    checks = " ".join(f"{name}={c['result']}" for name, c in status["checks"].items())
    return (
        f"t={elapsed:4.0f}s  {status['phase']:<11} weight={status['weight']:5.1f}%  "
        f"legacy={served['legacy']:3d} new={served['new']:3d} failed={served['failed']:2d}  "
        f"{checks}"
    )


class Traffic:
    def __init__(self, proxy_url: str, admin_url: str, admin_token: str) -> None:
        self.proxy = httpx.AsyncClient(base_url=proxy_url, timeout=10.0, trust_env=False)
        self.admin = httpx.AsyncClient(
            base_url=admin_url,
            timeout=5.0,
            trust_env=False,
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        self.served: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.users = [f"user-{i}" for i in range(500)]
        self.history_seen = 0

    async def send_one(self) -> None:
        path, body = execute_request()
        try:
            response = await self.proxy.post(
                path, json=body, headers={"X-User-Id": random.choice(self.users)}
            )
        except httpx.HTTPError:
            self.served["failed"] += 1
            return
        backend = response.headers.get("x-cutover-backend", "?")
        self.served[backend if response.status_code < 500 else "failed"] += 1

    async def status(self) -> dict[str, Any] | None:
        try:
            response = await self.admin.get("/status")
            return response.json() if response.is_success else None
        except (httpx.HTTPError, ValueError):
            return None

    async def report(self, elapsed: float) -> dict[str, Any] | None:
        status = await self.status()
        served, self.served = self.served, Counter()
        self.total.update(served)
        if status is None:
            print(f"t={elapsed:4.0f}s  (admin API not answering)", flush=True)
            return None
        for transition in status["history"][self.history_seen :]:
            if transition["actor"] != Actor.STARTUP:
                print(transition_line(transition), flush=True)
        self.history_seen = len(status["history"])
        print(status_line(elapsed, status, served), flush=True)
        return status

    async def aclose(self) -> None:
        await self.proxy.aclose()
        await self.admin.aclose()


async def drive(
    traffic: Traffic,
    *,
    rate: float,
    duration: float | None,
    fault: str | None,
    new_url: str,
    new_token: str,
    stop: StopSignals,
) -> Counter[str]:
    """Send traffic and report each second until ``duration`` is over or a stop signal."""
    started = time.monotonic()
    next_report = started + 1
    injected = False
    with stop.waking() as stopped:
        try:
            while not stopped.is_set() and (
                duration is None or time.monotonic() - started < duration
            ):
                tick = time.monotonic()
                await traffic.send_one()
                now = time.monotonic()
                if now >= next_report:
                    next_report += 1
                    status = await traffic.report(now - started)
                    if (
                        fault
                        and not injected
                        and status is not None
                        and status["weight"] >= 50
                        and status["phase"] != Phase.ROLLED_BACK
                    ):
                        await inject_fault(new_url, new_token, fault)
                        injected = True
                pause = max(0.0, 1 / rate - (time.monotonic() - tick))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), pause)
        finally:
            await traffic.aclose()
    return traffic.total


async def inject_fault(new_url: str, token: str, fault: str) -> None:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        response = await client.put(
            f"{new_url}/admin/faults",
            json=FAULTS[fault],
            headers={"Authorization": f"Bearer {token}"},
        )
    response.raise_for_status()
    print(f"  !!! injected a fault into the new backend: {FAULTS[fault]}", flush=True)
