"""Dual run: mirror a sample of requests to the other backend and compare the answers.

The client's response comes from the primary alone. A mirrored call runs as its own task,
with its own timeout and a bound on how many are in flight; its failure is never seen by
the client. The comparison waits for both answers, then counts the result and writes a
sample of every mismatch to the JSON Lines log.

Comparing two JSON bodies walks both trees in Python (about 2 ms for 5 KB, 20 ms for
50 KB), so all but the smallest comparisons run on one comparison thread, off the event
loop: one thread, so comparisons take turns with the loop for the interpreter rather than
crowding it out. The log's writes go to its own thread (``shadow_log.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter

from cutover.config import RouteShadowConfig, ShadowConfig
from cutover.request.metrics import Metrics
from cutover.request.mirror import Mirror
from cutover.shadow.compare import Tolerance, compare_responses
from cutover.shadow.log import ShadowLog, mismatch_record, redact_query, totals_record
from cutover.upstream.base import Upstream, UpstreamError
from cutover.vocabulary import ShadowResult

logger = logging.getLogger("cutover.shadow")

# Bodies this large together are compared on the comparison thread (a hop costs ~50 µs).
OFF_LOOP_BYTES = 1024


class TooLarge(Exception):
    """A body is over ``shadow.max_response_body``; the pair is not compared."""


class Shadower:
    def __init__(
        self,
        config: ShadowConfig,
        upstreams: dict[str, Upstream],
        metrics: Metrics,
        *,
        log: ShadowLog | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.upstreams = upstreams
        self.metrics = metrics
        self.log = log
        self.draw = draw
        self.in_flight = 0
        self.totals: Counter[str] = Counter({result: 0 for result in ShadowResult})
        self.run_id = secrets.token_hex(6)
        self._tasks: set[asyncio.Task[None]] = set()
        self._comparer = ThreadPoolExecutor(1, thread_name_prefix="cutover-compare")

    def sampled(self, rule: RouteShadowConfig, method: str) -> bool:
        return rule.enabled and method in rule.methods and self.draw() < rule.sample

    def record(self, migration: str, route: str, result: ShadowResult) -> None:
        self.totals[result] += 1
        self.metrics.shadow_requests.labels(migration, route, result).inc()

    def start(self, mirror: Mirror) -> bool:
        """Launch the mirrored call; False (and counted as dropped) when too many are out."""
        if self.in_flight >= self.config.max_in_flight:
            self.record(mirror.migration, mirror.route, ShadowResult.DROPPED)
            mirror.failed()  # settled: nothing more happens to it
            return False
        self.in_flight += 1
        mirror.launched = True
        task = asyncio.get_running_loop().create_task(self._run(mirror))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def client_left(self, mirror: Mirror) -> None:
        """The mirror's client left early: the comparison is dropped at once (the shadow
        call stopped, its slot free), or counted dropped here if it had not started."""
        if mirror.left() and not mirror.launched:
            self.record(mirror.migration, mirror.route, ShadowResult.DROPPED)

    async def _run(self, mirror: Mirror) -> None:
        result = ShadowResult.ERROR
        diffs: list = []
        shadow_status = 0
        # The shadow call runs while the client's answer streams. Whichever ends the pair
        # first decides: a failed shadow call at once, and an answer known not to come (the
        # client left, the primary failed, it was too large) stops the shadow call.
        fetch = asyncio.ensure_future(self._fetch(mirror))
        try:
            async with asyncio.timeout(self.config.timeout):
                await asyncio.wait((fetch, mirror.primary), return_when=asyncio.FIRST_COMPLETED)
                if not mirror.primary.done():
                    fetch.result()  # raises the shadow call's failure
                primary = await mirror.primary
                if primary is not None:
                    shadow_status, shadow_type, shadow_body = await fetch
            if primary is None:
                result = (
                    ShadowResult.DROPPED
                    if mirror.client_left or mirror.too_large
                    else ShadowResult.ERROR
                )
            else:
                status, primary_type, primary_body = primary
                rule = mirror.rule
                compare = functools.partial(
                    compare_responses,
                    status, primary_body, primary_type,
                    shadow_status, shadow_body, shadow_type,
                    tolerance=Tolerance(rule.tolerance.relative, rule.tolerance.absolute),
                    ignore=rule.ignore,
                )  # fmt: skip
                if len(primary_body) + len(shadow_body) < OFF_LOOP_BYTES:
                    diffs = compare()
                else:
                    loop = asyncio.get_running_loop()
                    diffs = await loop.run_in_executor(self._comparer, compare)
                result = ShadowResult.MISMATCH if diffs else ShadowResult.MATCH
        except TooLarge:
            result = ShadowResult.DROPPED
        except (UpstreamError, TimeoutError) as exc:
            logger.debug("shadow call to %s failed: %s", mirror.shadow_backend, exc)
        except Exception:
            logger.exception("shadow comparison failed")
        finally:
            self.in_flight -= 1
            if not fetch.done():
                fetch.cancel()
            elif not fetch.cancelled():
                fetch.exception()  # retrieved: a failure of an unneeded call says nothing
        self.record(mirror.migration, mirror.route, result)
        if result is ShadowResult.MISMATCH and self.log is not None:
            self._log(mirror, shadow_status, diffs)

    async def _fetch(self, mirror: Mirror) -> tuple[int, str | None, bytes]:
        started = perf_counter()
        headers = [*mirror.headers, (b"x-cutover-shadow", b"true")]
        upstream = self.upstreams[mirror.shadow_backend]
        response = await upstream.send(mirror.method, mirror.shadow_url, headers, mirror.body)
        try:
            chunks, size, more = [], 0, True
            while more:
                chunk, more = await response.read()
                size += len(chunk)
                if size > self.config.max_response_body:
                    raise TooLarge
                chunks.append(chunk)
        finally:
            await response.aclose()
        self.metrics.shadow_duration.labels(mirror.shadow_backend).observe(perf_counter() - started)
        content_type = next(
            (v.decode("latin-1") for n, v in response.headers if n.lower() == b"content-type"),
            None,
        )
        return response.status, content_type, b"".join(chunks)

    def _log(self, mirror: Mirror, shadow_status: int, diffs: list) -> None:
        assert self.log is not None
        with contextlib.suppress(ValueError):  # the log is closed: the proxy is stopping
            self.log.write(
                mismatch_record(
                    migration=mirror.migration,
                    route=mirror.route,
                    method=mirror.method,
                    path=mirror.path,
                    query=redact_query(mirror.query),
                    headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in mirror.headers],
                    primary_backend=mirror.primary_backend,
                    primary_status=mirror.status,
                    shadow_backend=mirror.shadow_backend,
                    shadow_status=shadow_status,
                    diffs=diffs,
                    totals=dict(self.totals),
                    run_id=self.run_id,
                    at=time.time(),
                )
            )

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._comparer.shutdown(wait=False, cancel_futures=True)
        if self.log is not None:
            self.log.write(totals_record(totals=self.totals, run_id=self.run_id, at=time.time()))
            await asyncio.to_thread(self.log.close)  # writes what is queued
