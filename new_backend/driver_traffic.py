"""The ``cutover demo`` driver's traffic: a stream of requests through the proxy to every
migration's endpoint (backtest executions and the strategy catalogue, with a sticky
X-User-Id, from one of a few client applications named by X-Client-Id), each migration's
progress read from the admin API's GET /migrations once a second, and the fault it injects
into the new backend, under one migration's prefix only, when that migration reaches its
second stage."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from typing import Any

import httpx

from cutover_demo.new_backend.driver_migrations import (
    Migration,
    Progress,
    fault_due,
    fault_target,
    fault_weight,
    migration_of,
    settled,
    settled_line,
)
from cutover_demo.new_backend.driver_signals import StopSignals

STRATEGIES = ("sma_crossover", "rsi_mean_reversion", "momentum", "buy_and_hold")
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA")
STRATEGIES_PATH = "/api/v1/strategies"
# The applications the demo's users call from (X-Client-Id, the usage report's client): each
# user always calls from the same one.
CLIENT_APPS = ("mobile-app", "web-frontend", "partner-42", "reporting-job")
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


class Traffic:
    def __init__(self, proxy_url: str, admin_url: str, admin_token: str) -> None:
        self.proxy = httpx.AsyncClient(base_url=proxy_url, timeout=10.0, trust_env=False)
        self.admin = httpx.AsyncClient(
            base_url=admin_url,
            timeout=5.0,
            trust_env=False,
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        self.total: Counter[str] = Counter()
        self.progress = Progress()
        self.migrations: list[Migration] = []
        self.users = [f"user-{i}" for i in range(500)]
        self._sent = 0

    async def send_one(self) -> None:
        """The next request: backtest executions and catalogue reads in turn."""
        self._sent += 1
        user = random.randrange(len(self.users))
        headers = {"X-User-Id": self.users[user], "X-Client-Id": CLIENT_APPS[user % 4]}
        if self._sent % 2:
            path, body = execute_request()
            method, request = "POST", self.proxy.post(path, json=body, headers=headers)
        else:
            method, path = "GET", STRATEGIES_PATH
            request = self.proxy.get(path, headers=headers)
        try:
            response = await request
        except httpx.HTTPError:
            outcome = "failed"
        else:
            backend = response.headers.get("x-cutover-backend", "?")
            outcome = backend if response.status_code < 500 else "failed"
        self.total[outcome] += 1
        self.progress.served(migration_of(method, path, self.migrations), outcome)

    async def poll(self) -> list[Migration] | None:
        """GET /migrations; None when the admin API does not answer it."""
        try:
            response = await self.admin.get("/migrations")
            migrations = response.json()["migrations"] if response.is_success else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        if migrations is not None:
            self.migrations = migrations
        return migrations

    async def report(self, elapsed: float) -> list[Migration] | None:
        migrations = await self.poll()
        if migrations is None:
            print(f"t={elapsed:4.0f}s  (admin API not answering GET /migrations)", flush=True)
            return None
        for line in self.progress.lines(elapsed, migrations):
            print(line, flush=True)
        return migrations

    async def aclose(self) -> None:
        await self.proxy.aclose()
        await self.admin.aclose()


class FaultPlan:
    """The ``--fault`` to inject into the new backend, confined to the path prefix of the
    first migration with a rollout, once that migration reaches its second stage."""

    def __init__(self, fault: str, new_url: str, new_token: str) -> None:
        self.fault = fault
        self.new_url = new_url
        self.new_token = new_token
        self.target: Migration | None = None
        self.planned = False
        self.injected = False

    def plan_line(self, migrations: list[Migration]) -> str:
        """Chooses the target; says what goes in, where and when."""
        self.target = fault_target(migrations)
        if self.target is None:
            return f"demo: no migration has a rollout: the {self.fault} fault is not injected"
        name, prefix = self.target["name"], self.target["match"]["prefix"]
        line = (
            f"demo: once {name} reaches {fault_weight(self.target):g}%, the {self.fault} "
            f"fault goes into new for the requests under {prefix} ({name}'s prefix) only"
        )
        others = [m["name"] for m in migrations if m is not self.target and m["to"] == "new"]
        if self.fault == "memory" and others:
            # The memory check reads the whole process of new: it fails for every
            # migration to new at once.
            line += f" (a leak grows all of new: {', '.join(others)} will roll back too)"
        return line

    def body(self) -> dict[str, Any]:
        assert self.target is not None
        return {**FAULTS[self.fault], "path_prefix": self.target["match"]["prefix"]}

    def due(self, migrations: list[Migration]) -> bool:
        if self.target is None or self.injected:
            return False
        current = next((m for m in migrations if m["name"] == self.target["name"]), None)
        return current is not None and fault_due(current)

    async def inject(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
                response = await client.put(
                    f"{self.new_url}/admin/faults",
                    json=self.body(),
                    headers={"Authorization": f"Bearer {self.new_token}"},
                )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            print(f"  !!! could not inject the fault (trying again): {exc}", flush=True)
            return
        self.injected = True
        print(f"  !!! injected a fault into the new backend: {self.body()}", flush=True)

    async def follow(self, migrations: list[Migration]) -> None:
        """On each reading of the migrations: the plan the first time, the fault when due."""
        if not self.planned:
            print(self.plan_line(migrations), flush=True)
            self.planned = True
        if self.due(migrations):
            await self.inject()


async def drive(
    traffic: Traffic,
    *,
    rate: float,
    duration: float | None,
    fault: FaultPlan | None,
    stop: StopSignals,
    every: float = 1.0,
) -> bool:
    """Send traffic and report every ``every`` seconds until every migration is settled
    (True), or ``duration`` is over or a stop signal arrived (False)."""
    started = time.monotonic()
    next_report = started
    with stop.waking() as stopped:
        try:
            while not stopped.is_set() and (
                duration is None or time.monotonic() - started < duration
            ):
                tick = time.monotonic()
                if tick >= next_report:
                    next_report += every
                    migrations = await traffic.report(tick - started)
                    if migrations is not None and fault is not None:
                        await fault.follow(migrations)
                    if migrations is not None and settled(migrations):
                        print(settled_line(migrations), flush=True)
                        return True
                await traffic.send_one()
                pause = max(0.0, 1 / rate - (time.monotonic() - tick))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), pause)
        finally:
            await traffic.aclose()
    return False
