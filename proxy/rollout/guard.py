"""The guard loop: every ``guard.interval`` seconds, read the window, judge it, and let
the rollout promote or roll back. It runs beside the proxy, never on the request path.

Windows and the loop's timing are on the monotonic clock (``now`` and ``since`` handed to
the source are monotonic seconds), so a wall-clock jump changes no window."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

from cutover.config import GuardConfig, ShadowConfig
from cutover.request.metrics import Metrics
from cutover.rollout.checks import (
    Verdict,
    error_rate_check,
    latency_check,
    memory_check,
    shadow_check,
    source_error,
)
from cutover.rollout.coordination import Coordination
from cutover.rollout.guard_status import EvaluationFile, EvaluationFileError
from cutover.rollout.machine import Rollout
from cutover.rollout.sources import MemoryScraper, Observation, ScrapeError
from cutover.rollout.state import SaveError, Stamp
from cutover.vocabulary import CheckResult, Phase

logger = logging.getLogger("cutover.guard")

# observe(now, since): the readings over the window ending now, less anything before since
# (both on the monotonic clock).
Observe = Callable[[float, float | None], Awaitable[Observation]]


def _first_error(observation: Observation, *readings: str) -> str | None:
    for reading in readings:
        if reading in observation.errors:
            return observation.errors[reading]
    return None


def worse(whole: Verdict, last: Verdict) -> Verdict:
    """The window's verdict, unless the last interval alone already fails."""
    if last.result is CheckResult.FAIL and whole.result is not CheckResult.FAIL:
        return replace(last, detail=f"last interval: {last.detail}")
    return whole


class Guard:
    def __init__(
        self,
        config: GuardConfig,
        rollout: Rollout,
        metrics: Metrics,
        observe: Observe,
        *,
        scraper: MemoryScraper | None = None,
        memory_from_scrape: bool = True,
        shadow: ShadowConfig | None = None,
        coordination: Coordination | None = None,
        shared: EvaluationFile | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``shared``: where the leader publishes each evaluation and the other workers read
        it (None: this process keeps its evaluations to itself)."""
        self.config = config
        self.coordination = coordination
        self.shared = shared
        self.rollout = rollout
        self.metrics = metrics
        self.observe = observe
        self.scraper = scraper
        self.memory_from_scrape = memory_from_scrape
        self.monotonic = monotonic
        self._shared_stamp: Stamp | None = None
        self._shared_problem: str | None = None
        self._other_leads = False  # another process held the leader lock at the last tick
        self.memory_enabled = scraper is not None and "new" in scraper.urls
        self.shadow_config = shadow
        self.shadow_enabled = shadow is not None

    async def read_memory(self, observation: Observation) -> None:
        """Scrape each backend's memory for the gauge. With the embedded source, new's
        reading is also the memory check's input; the Prometheus source brings its own."""
        if self.scraper is None:
            return
        for backend in self.scraper.urls:
            try:
                value = await self.scraper.scrape(backend)
            except ScrapeError as exc:
                if backend == "new" and self.memory_from_scrape:
                    observation.errors["new_memory"] = str(exc)
                continue
            if backend == "new" and self.memory_from_scrape:
                observation.new_memory = value

    def judge(self, observation: Observation) -> list[Verdict]:
        legacy_p95 = self.legacy_baseline(observation)
        error_rate = self.error_rate(observation)
        if observation.recent is not None:
            # The error rate over a whole window dilutes a fault that began a moment ago;
            # the last interval alone shows it at once. (Latency needs no such help: a p95
            # moves as soon as 5 % of the window is slow, and a 5-second p95 is noisy.)
            error_rate = worse(error_rate, self.error_rate(observation.recent))
        verdicts = [error_rate, self.latency(observation, legacy_p95)]
        if self.shadow_enabled:
            verdicts.append(self.shadow(observation))
        if self.memory_enabled:
            error = _first_error(observation, "new_memory")
            verdicts.append(
                source_error("memory", error, self.config.max_memory_ratio)
                if error
                else memory_check(
                    observation.new_memory,
                    self.rollout.state.baseline_memory_bytes,
                    max_memory_ratio=self.config.max_memory_ratio,
                )
            )
        return verdicts

    def shadow(self, observation: Observation) -> Verdict:
        assert self.shadow_config is not None
        rolls_back = self.shadow_config.rollback_on_mismatch
        threshold = self.shadow_config.max_mismatch_rate
        error = _first_error(observation, "shadow_comparisons", "shadow_mismatches")
        if error:
            return source_error("shadow", error, threshold, rolls_back=rolls_back)
        return shadow_check(
            observation.shadow_comparisons,
            observation.shadow_mismatches,
            max_mismatch_rate=threshold,
            min_requests=self.config.min_requests,
            rolls_back=rolls_back,
        )

    def error_rate(self, observation: Observation) -> Verdict:
        c = self.config
        error = _first_error(observation, "new_requests", "new_errors")
        if error:
            return source_error("error_rate", error, c.max_error_rate)
        return error_rate_check(
            observation.new_requests,
            observation.new_errors,
            max_error_rate=c.max_error_rate,
            min_requests=c.min_requests,
        )

    def latency(self, observation: Observation, legacy_p95: float | None) -> Verdict:
        c = self.config
        error = _first_error(observation, "new_requests", "new_p95", "legacy_p95")
        if error:
            return source_error("latency", error, c.max_latency_ratio)
        return latency_check(
            observation.new_p95,
            legacy_p95,
            new_requests=observation.new_requests,
            max_latency_ratio=c.max_latency_ratio,
            min_requests=c.min_requests,
        )

    def legacy_baseline(self, observation: Observation) -> float | None:
        """Legacy's p95 in this window when it had enough traffic; otherwise the last one
        that did (at 100 % legacy serves almost nothing)."""
        state = self.rollout.state
        enough = (observation.legacy_requests or 0) >= self.config.min_requests
        if enough and observation.legacy_p95 is not None:
            state.last_legacy_p95 = observation.legacy_p95
            return observation.legacy_p95
        return state.last_legacy_p95

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        if self.coordination is None:
            yield
        else:
            async with self.coordination.locked():
                yield

    async def tick(self) -> list[Verdict]:
        """One evaluation. With several workers only the leader judges; the others adopt
        whatever the leader (or an operator) saved, and the leader's latest evaluation."""
        coordination = self.coordination
        if coordination is not None:
            self._other_leads = not await asyncio.to_thread(coordination.lead)
        if self._other_leads:
            async with self._locked():
                await self.rollout.sync()
            await self.follow()
            return []
        observation = await self.observe(self.monotonic(), self.rollout.judging_since_monotonic())
        await self.read_memory(observation)
        async with self._locked():
            await self.rollout.sync()
            await self.record_baseline(observation)
            verdicts = self.judge(observation)
            await self.rollout.evaluate(verdicts, errors_fail=self.config.rollback_on_source_error)
        await self.publish()
        for verdict in verdicts:
            self.metrics.guard_checks.labels(verdict.check, verdict.result.value).inc()
            if verdict.result is CheckResult.ERROR:
                logger.warning("guard check %s: source error: %s", verdict.check, verdict.detail)
        return verdicts

    async def publish(self) -> None:
        """Write this evaluation for the other workers (and a restart); never fatal."""
        if self.shared is None:
            return
        try:
            await asyncio.to_thread(self.shared.write, self.rollout.shared())
        except OSError as exc:
            self._problem(f"cannot write {self.shared.path}: {exc.strerror or exc}")
        else:
            self._shared_problem = None

    async def follow(self) -> None:
        """Adopt the leader's latest evaluation, if it wrote one since we last looked. Only
        in a worker that another one leads: the leader's own evaluation is in memory."""
        if self.shared is None or not self._other_leads:
            return
        try:
            stamp, shared = await asyncio.to_thread(self.shared.read_if_changed, self._shared_stamp)
        except (OSError, EvaluationFileError) as exc:
            self._problem(f"cannot use the guard's shared evaluation: {exc}")
            return
        self._shared_stamp = stamp
        if shared is not None:
            # Between two of the leader's evaluations up to an interval passes (half of one
            # after a failure), plus the time the evaluation itself takes.
            self.rollout.adopt(shared, fresh=2 * self.config.interval)

    def _problem(self, message: str) -> None:
        if message != self._shared_problem:  # once, not every interval
            logger.warning("%s", message)
            self._shared_problem = message

    async def record_baseline(self, observation: Observation) -> None:
        """new's memory when the rollout (re)started is the memory check's baseline. One
        that cannot be saved is logged and taken again at the next evaluation."""
        state = self.rollout.state
        if (
            self.memory_enabled
            and state.baseline_memory_bytes is None
            and observation.new_memory is not None
            and state.phase != Phase.ROLLED_BACK
        ):
            try:
                await self.rollout.set_baseline_memory(observation.new_memory)
            except SaveError as exc:
                logger.error("the memory baseline was not saved, trying again next time: %s", exc)
        baseline = self.rollout.state.baseline_memory_bytes
        if baseline is not None:
            self.metrics.baseline_memory.labels("new").set(baseline)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:
                logger.exception("guard evaluation failed; trying again next interval")
            # After a failed evaluation, confirm (or clear) it in half an interval: a real
            # fault is rolled back within about 1.5 intervals of being seen, not 2.
            interval = self.config.interval
            if self.rollout.consecutive_failures:
                interval /= 2
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, interval - elapsed))
