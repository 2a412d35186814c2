"""Guard readings from a Prometheus server instead of this proxy's own counters.

Each proxy replica counts only the requests it carried, so the embedded source judges one
replica alone. Pointed at a Prometheus that scrapes every replica, this source lets the
guard judge them together: the default queries (``config.DEFAULT_QUERIES``) aggregate
Cutover's own metric names (``cutover_requests_total``,
``cutover_request_duration_seconds_bucket``, ``cutover_backend_resident_memory_bytes``)
over all replicas, and ``guard.prometheus.queries`` replaces any of them.

Every reading is one instant query per migration at the evaluation time, ``$window``
replaced by the guard window, ``$migration`` by the migration's name, ``$to`` and ``$from``
by its two backends'. An empty result or NaN is no data (None). Anything unusable — an error
answer, several series, a range result, ±Inf, a timeout — is None too, with the reason in
``Observation.errors``: a query that reads nothing must never look like a passing check.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from cutover.config import GuardConfig
from cutover.rollout.sources import READINGS, Observation, Subject

QUERY_PATH = "/api/v1/query"
_MAX_DETAIL = 200


class QueryError(Exception):
    """One query gave no usable number; the message says why."""


def prometheus_duration(seconds: float) -> str:
    """``60`` → ``60s``, ``2.5`` → ``2500ms`` (Prometheus durations take integers only)."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise QueryError(f"query returned a value that is not a number: {raw!r}") from None
    if math.isnan(value):
        return None
    if math.isinf(value):
        raise QueryError(f"query returned {'+Inf' if value > 0 else '-Inf'}")
    return value


def _result_value(data: Any) -> float | None:
    try:
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return _number(result[1])
        if kind != "vector":
            raise QueryError(f"query returned a {kind}, not an instant vector or scalar")
        if not result:
            return None
        if len(result) > 1:
            raise QueryError(f"query returned {len(result)} series; aggregate it to one (sum/max)")
        sample = result[0]
        if "value" not in sample and "histogram" in sample:
            raise QueryError("query returned a native histogram sample, not a number")
        return _number(sample["value"][1])
    except (KeyError, IndexError, TypeError):
        raise QueryError("Prometheus sent a malformed query result") from None


def parse_response(response: httpx.Response) -> float | None:
    """The single number in an ``/api/v1/query`` answer, None for no data; else QueryError."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("status") == "error":
        kind = body.get("errorType") or "error"
        detail = _shorten(str(body.get("error") or "no message"))
        raise QueryError(f"Prometheus error {kind} (HTTP {response.status_code}): {detail}")
    if not response.is_success:
        raise QueryError(f"Prometheus answered HTTP {response.status_code}")
    if body is None:
        raise QueryError("Prometheus answered with a body that is not JSON")
    if not isinstance(body, dict) or body.get("status") != "success":
        raise QueryError("Prometheus answered without status success")
    return _result_value(body.get("data"))


class PrometheusSource:
    """The guard's readings as instant PromQL queries against ``guard.prometheus.url``."""

    def __init__(
        self,
        guard: GuardConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: the wall clock, for the queries' evaluation time (Prometheus stamps
        its samples with it); the guard's ``now`` and ``since`` are monotonic."""
        self.clock = clock
        settings = guard.prometheus
        self.window = guard.window
        self.timeout = settings.timeout
        self.templates: dict[str, str] = {
            reading: getattr(settings.queries, reading) for reading in READINGS
        }
        self._client = httpx.AsyncClient(
            base_url=settings.url, timeout=settings.timeout, transport=transport, trust_env=False
        )

    def queries_for(self, window: float, subject: Subject) -> dict[str, str]:
        values = {
            "$window": prometheus_duration(window),
            "$migration": subject.name,
            "$from": subject.source,
            "$to": subject.target,
        }
        queries = {}
        for reading, query in self.templates.items():
            for variable, value in values.items():
                query = query.replace(variable, value)
            queries[reading] = query
        return queries

    async def observe(self, now: float, subjects: Sequence[Subject]) -> dict[str, Observation]:
        """Each subject's readings. ``since``: its window shrinks so that it starts no
        earlier (at least 1 s). Both are monotonic: only ``now - since`` is used; the
        queries run at ``clock()``."""
        at = self.clock()
        found = await asyncio.gather(*(self._observe(now, at, subject) for subject in subjects))
        return {
            subject.name: observation for subject, observation in zip(subjects, found, strict=True)
        }

    async def _observe(self, now: float, at: float, subject: Subject) -> Observation:
        window = self.window
        if subject.since is not None and now - subject.since < window:
            window = max(1.0, now - subject.since)
        queries = self.queries_for(window, subject)
        outcomes = await asyncio.gather(
            *(self._reading(reading, queries[reading], at) for reading in READINGS)
        )
        observation = Observation()
        for reading, (value, error) in zip(READINGS, outcomes, strict=True):
            setattr(observation, reading, value)
            if error is not None:
                observation.errors[reading] = error
        return observation

    async def query(self, promql: str, now: float) -> float | None:
        """One instant query at unix time ``now``; None for no data, QueryError otherwise."""
        params = {"query": promql, "time": f"{now:.3f}"}
        try:
            response = await self._client.get(QUERY_PATH, params=params)
        except httpx.TimeoutException as exc:
            reason = f"Prometheus did not answer within {self.timeout:g}s ({type(exc).__name__})"
            raise QueryError(reason) from None
        except httpx.HTTPError as exc:
            detail = f": {_shorten(str(exc))}" if str(exc) else ""
            raise QueryError(f"cannot query Prometheus ({type(exc).__name__}{detail})") from None
        return parse_response(response)

    async def _reading(
        self, reading: str, promql: str, now: float
    ) -> tuple[float | None, str | None]:
        try:
            return await self.query(promql, now), None
        except QueryError as exc:
            return None, f"{reading}: {exc}"

    async def aclose(self) -> None:
        await self._client.aclose()
