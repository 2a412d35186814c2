"""The guard loop: every ``guard.interval`` seconds, read the window of every migration,
judge each on its own (``judge.py``), and let each migration's rollout promote or roll back.
It runs beside the proxy, never on the request path. A migration that fails rolls back
alone; the others keep their phase and weight.

Windows and the loop's timing are on the monotonic clock (``now`` and ``since`` handed to
the source are monotonic seconds), so a wall-clock jump changes no window."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from cutover.config import GuardConfig
from cutover.request.metrics import Metrics
from cutover.rollout.checks import Verdict
from cutover.rollout.coordination import Coordinator
from cutover.rollout.guard_status import EvaluationFile, EvaluationFileError
from cutover.rollout.judge import Judge
from cutover.rollout.registry import Migrations
from cutover.rollout.sources import MemoryScraper, Observation, ScrapeError, Subject
from cutover.rollout.state import SaveError, Stamp
from cutover.vocabulary import CheckResult, Phase

logger = logging.getLogger("cutover.guard")

# observe(now, subjects): each subject's readings over the window ending now, less anything
# before its since (both on the monotonic clock), by migration name.
Observe = Callable[[float, Sequence[Subject]], Awaitable[dict[str, Observation]]]
# share(): publish this host's counters for the fleet's leader; never raises.
Share = Callable[[], Awaitable[None]]


class Guard:
    def __init__(
        self,
        config: GuardConfig,
        migrations: Migrations,
        judges: list[Judge],
        metrics: Metrics,
        observe: Observe,
        *,
        scraper: MemoryScraper | None = None,
        memory_from_scrape: bool = True,
        coordination: Coordinator | None = None,
        shared: EvaluationFile | None = None,
        share: Share | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``judges``: one per configured migration (a reload may replace the list);
        ``shared``: where the leader publishes each evaluation and the other workers read
        it (None: this process keeps its evaluations to itself); ``share``: run by every
        host at every tick, leading or not (the fleet's counters, ``FleetSource``)."""
        self.config = config
        self.migrations = migrations
        self.judges = judges
        self.coordination = coordination
        self.shared = shared
        self.metrics = metrics
        self.observe = observe
        self.share = share
        self.scraper = scraper
        self.memory_from_scrape = memory_from_scrape
        self.monotonic = monotonic
        self._shared_stamp: Stamp | None = None
        self._shared_problem: str | None = None
        self._other_leads = False  # another process held the leader lock at the last tick

    async def read_memory(self) -> dict[str, float | str]:
        """Scrape each backend's memory for the gauge: by backend, the reading, or why there
        is none. With the embedded source it is also the memory checks' input."""
        readings: dict[str, float | str] = {}
        if self.scraper is None:
            return readings
        for backend in self.scraper.urls:
            try:
                readings[backend] = await self.scraper.scrape(backend)
            except ScrapeError as exc:
                readings[backend] = str(exc)
        return readings

    def _with_memory(self, judge: Judge, observation: Observation, memory: dict) -> None:
        if not (judge.memory and self.memory_from_scrape):
            return
        reading = memory.get(judge.target)
        if isinstance(reading, str):
            observation.errors["new_memory"] = reading
        elif reading is not None:
            observation.new_memory = reading

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        if self.coordination is None:
            yield
        else:
            async with self.coordination.locked():
                yield

    @contextlib.asynccontextmanager
    async def _fenced(self, epoch: int | None) -> AsyncIterator[None]:
        with self.migrations.book.fenced(epoch):
            yield

    async def tick(self) -> dict[str, list[Verdict]]:
        """One evaluation of every migration, by name. With several workers only the
        leader judges; the others adopt whatever the leader (or an operator) saved, and the
        leader's latest evaluations."""
        if self.share is not None:
            await self.share()
        coordination = self.coordination
        if coordination is not None:
            # Alone: the shared store is unreachable, and every host judges its own traffic
            # (the store then takes moves towards ``from`` only, ``RedisBook``).
            self._other_leads = not await coordination.try_lead() and not coordination.alone
        if self._other_leads:
            async with self._locked():
                await self.migrations.sync()
            await self.follow()
            return {}
        judges = list(self.judges)
        observations = await self.observe(self.monotonic(), [j.subject() for j in judges])
        memory = await self.read_memory()
        results: dict[str, list[Verdict]] = {}
        epoch = coordination.epoch if coordination is not None else None
        async with self._locked(), self._fenced(epoch):
            await self.migrations.sync()
            for judge in judges:
                observation = observations.setdefault(judge.name, Observation())
                self._with_memory(judge, observation, memory)
            await self.record_baselines(judges, observations)
            for judge in judges:
                verdicts = judge.judge(observations[judge.name])
                await judge.rollout.evaluate(
                    verdicts, errors_fail=judge.config.rollback_on_source_error
                )
                results[judge.name] = verdicts
        await self.publish()
        for name, verdicts in results.items():
            for verdict in verdicts:
                self.metrics.guard_checks.labels(name, verdict.check, verdict.result.value).inc()
                if verdict.result is CheckResult.ERROR:
                    logger.warning(
                        "%s: guard check %s: source error: %s", name, verdict.check, verdict.detail
                    )
        return results

    async def publish(self) -> None:
        """Write this evaluation for the other workers (and a restart); never fatal."""
        if self.shared is None:
            return
        evaluations = {rollout.name: rollout.shared() for rollout in self.migrations}
        try:
            await asyncio.to_thread(self.shared.write, evaluations)
        except OSError as exc:
            self._problem(f"cannot write {self.shared.path}: {exc.strerror or exc}")
        else:
            self._shared_problem = None

    async def follow(self) -> None:
        """Adopt the leader's latest evaluations, if it wrote them since we last looked. Only
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
            for rollout in self.migrations:
                evaluation = shared.get(rollout.name)
                if evaluation is not None:
                    # Between two of the leader's evaluations up to an interval passes (half
                    # of one after a failure), plus the time the evaluation itself takes.
                    rollout.adopt(evaluation, fresh=2 * self.config.interval)

    def _problem(self, message: str) -> None:
        if message != self._shared_problem:  # once, not every interval
            logger.warning("%s", message)
            self._shared_problem = message

    async def record_baselines(self, judges: list[Judge], observations: dict) -> None:
        """``to``'s memory when a migration (re)started is its memory check's baseline; every
        baseline missing is saved in one write. One that cannot be saved is logged and taken
        again at the next evaluation."""
        missing = {}
        for judge in judges:
            state = judge.rollout.state
            observation = observations.get(judge.name)
            if (
                judge.memory
                and observation is not None
                and state.baseline_memory_bytes is None
                and observation.new_memory is not None
                and state.phase != Phase.ROLLED_BACK
            ):
                missing[judge.name] = observation.new_memory
        try:
            await self.migrations.set_baselines(missing)
        except SaveError as exc:
            logger.error("the memory baselines were not saved, trying again next time: %s", exc)
        for judge in judges:
            baseline = judge.rollout.state.baseline_memory_bytes
            if baseline is not None:
                self.metrics.baseline_memory.labels(judge.name, judge.target).set(baseline)

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
            if any(
                rollout.consecutive_failures and rollout.phase != Phase.ROLLED_BACK
                for rollout in self.migrations
            ):
                interval /= 2
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, interval - elapsed))
