"""The guard leader's latest evaluations shared through Redis, so every host's ``/status``
shows the checks and the hold the leader sees, and a host that takes the lead carries the
stage's hold on. The same interface as ``EvaluationFile`` (blocking: call it in a thread),
the same document; an unreachable Redis is an error of that interface (never fatal)."""

from __future__ import annotations

import zlib

import redis

from cutover.rollout.guard_status import (
    EvaluationFileError,
    SharedEvaluation,
    encode_evaluations,
    parse_evaluations,
)
from cutover.rollout.redis_documents import UNREACHABLE
from cutover.rollout.state import Stamp


class RedisEvaluations:
    def __init__(self, client: redis.Redis, key: str, *, ttl: float) -> None:
        """``ttl``: seconds an evaluation is kept without a newer one (a leader gone)."""
        self.client = client
        self.key = key
        self.path = key  # as named in the guard's warnings
        self.ttl_ms = max(1, round(ttl * 1000))

    def write(self, evaluations: dict[str, SharedEvaluation]) -> None:
        try:
            self.client.set(self.key, encode_evaluations(evaluations), px=self.ttl_ms)
        except UNREACHABLE as exc:
            raise OSError(f"the state store is unreachable: {exc}") from exc

    def read_if_changed(
        self, seen: Stamp | None
    ) -> tuple[Stamp | None, dict[str, SharedEvaluation] | None]:
        try:
            payload = self.client.get(self.key)
        except UNREACHABLE as exc:
            raise EvaluationFileError(f"{self.key}: the state store is unreachable: {exc}") from exc
        if payload is None:
            return None, None
        stamp = (0, len(payload), zlib.crc32(payload))
        if stamp == seen:
            return stamp, None
        return stamp, parse_evaluations(payload, self.key)
