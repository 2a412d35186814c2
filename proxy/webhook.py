"""Deliver each rollout transition as a JSON POST, in the background, with retries."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

logger = logging.getLogger("cutover.webhook")


class Webhook:
    def __init__(
        self,
        url: str,
        *,
        attempts: int = 4,
        backoff: float = 1.0,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff = backoff
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, trust_env=False)
        self._pending: set[asyncio.Task[bool]] = set()

    def notify(self, payload: dict[str, Any]) -> asyncio.Task[bool]:
        """Start delivering ``payload``; never blocks the caller."""
        task = asyncio.get_running_loop().create_task(self.deliver(payload))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def deliver(self, payload: dict[str, Any]) -> bool:
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._client.post(self.url, json=payload)
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt == self.attempts:
                logger.error(
                    "webhook %s: giving up after %d attempts (%s)", self.url, attempt, problem
                )
                return False
            logger.warning(
                "webhook %s: attempt %d failed (%s); retrying", self.url, attempt, problem
            )
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        return False

    async def aclose(self, *, grace: float = 2.0) -> None:
        if self._pending:
            _, late = await asyncio.wait(self._pending, timeout=grace)
            for task in late:
                task.cancel()
        await self._client.aclose()
