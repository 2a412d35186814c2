"""Deliver each rollout transition as a JSON POST, in the background, with retries.

One queue and one sender per URL: a payload is sent only after every earlier one was
delivered or given up on, so the receiver gets them in transition order, each numbered
(``sequence``: 1, 2, 3, ... from this process's start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

logger = logging.getLogger("cutover.webhook")

# Payloads waiting behind a slow or dead receiver; past it new ones are dropped (and logged).
MAX_QUEUE = 1000

Delivery = tuple[dict[str, Any], asyncio.Future[bool]]


class Webhook:
    def __init__(
        self,
        url: str,
        *,
        attempts: int = 4,
        backoff: float = 1.0,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff = backoff
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, trust_env=False)
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(max_queue)
        self._sequence = 0
        self._sender: asyncio.Task[None] | None = None

    def notify(self, payload: dict[str, Any]) -> asyncio.Future[bool]:
        """Queue ``payload`` behind the earlier ones, numbered; never blocks the caller. The
        future tells whether it was delivered."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._sequence += 1
        numbered = {**payload, "sequence": self._sequence}
        try:
            self._queue.put_nowait((numbered, done))
        except asyncio.QueueFull:
            logger.error(
                "webhook %s: %d payloads waiting; dropping number %d",
                self.url, self._queue.qsize(), self._sequence,
            )  # fmt: skip
            done.set_result(False)
            return done
        if self._sender is None:
            self._sender = loop.create_task(self._send_in_order())
        return done

    async def _send_in_order(self) -> None:
        while True:
            payload, done = await self._queue.get()
            delivered = False
            try:
                delivered = await self.deliver(payload)
            except Exception:
                logger.exception("webhook %s: delivery failed", self.url)
            finally:  # also when stopped mid-delivery
                self._queue.task_done()
                if not done.done():
                    done.set_result(delivered)

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
        """Give the queued deliveries up to ``grace`` seconds, then stop."""
        if self._sender is not None:
            try:
                await asyncio.wait_for(self._queue.join(), grace)
            except TimeoutError:
                logger.warning(
                    "webhook %s: stopping before every payload was delivered (%d queued)",
                    self.url, self._queue.qsize(),
                )  # fmt: skip
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        while not self._queue.empty():
            _, done = self._queue.get_nowait()
            done.set_result(False)
        await self._client.aclose()
