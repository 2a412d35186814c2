"""One migration's judgement: its readings in, its verdicts out, against its own thresholds
(the guard section's, overridden by the migration's ``guard``). Its requests only: the
error rate of its ``to``, the p95 of ``to`` against the p95 of ``from`` on the same
migration's requests, the memory of ``to`` against the baseline taken when it started."""

from __future__ import annotations

from dataclasses import replace

from cutover.config import GuardConfig, ShadowConfig
from cutover.rollout.checks import (
    Verdict,
    error_rate_check,
    latency_check,
    memory_check,
    shadow_check,
    source_error,
)
from cutover.rollout.machine import Rollout
from cutover.rollout.sources import Observation, Subject
from cutover.vocabulary import CheckResult


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


class Judge:
    def __init__(
        self,
        config: GuardConfig,
        rollout: Rollout,
        *,
        source: str,
        target: str,
        memory: bool = False,
        shadow: ShadowConfig | None = None,
    ) -> None:
        """``config``: the migration's thresholds; ``memory``: whether ``target``'s memory is
        read; ``shadow``: the dual run's section when the migration is mirrored."""
        self.config = config
        self.rollout = rollout
        self.source = source
        self.target = target
        self.memory = memory
        self.shadow_config = shadow

    @property
    def name(self) -> str:
        return self.rollout.name

    def subject(self) -> Subject:
        return Subject(self.name, self.source, self.target, self.rollout.judging_since_monotonic())

    def judge(self, observation: Observation) -> list[Verdict]:
        legacy_p95 = self.legacy_baseline(observation)
        error_rate = self.error_rate(observation)
        if observation.recent is not None:
            # The error rate over a whole window dilutes a fault that began a moment ago;
            # the last interval alone shows it at once. (Latency needs no such help: a p95
            # moves as soon as 5 % of the window is slow, and a 5-second p95 is noisy.)
            error_rate = worse(error_rate, self.error_rate(observation.recent))
        verdicts = [error_rate, self.latency(observation, legacy_p95)]
        if self.shadow_config is not None:
            verdicts.append(self.shadow(observation))
        if self.memory:
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
            names=(self.target, self.source),
        )

    def legacy_baseline(self, observation: Observation) -> float | None:
        """``from``'s p95 in this window when it had enough traffic; otherwise the last one
        that did (at 100 % ``from`` serves almost nothing of this migration)."""
        state = self.rollout.state
        enough = (observation.legacy_requests or 0) >= self.config.min_requests
        if enough and observation.legacy_p95 is not None:
            state.last_legacy_p95 = observation.legacy_p95
            return observation.legacy_p95
        return state.last_legacy_p95
