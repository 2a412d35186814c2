"""Where the guard's readings come from: the proxy's own metrics over a sliding window
(``embedded``), and each backend's resident memory from its ``/metrics``.

The ``prometheus`` source (``source_prometheus.py``) produces the same ``Observation``.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cutover.request.metrics import LATENCY_BUCKETS, Metrics
from cutover.rollout.checks import histogram_quantile
from cutover.upstream.tls import client_context
from cutover.vocabulary import ShadowResult

READINGS = (
    "new_requests",
    "new_errors",
    "legacy_requests",
    "new_p95",
    "legacy_p95",
    "new_memory",
    "shadow_comparisons",
    "shadow_mismatches",
)


@dataclass
class Observation:
    """One evaluation's readings. None means no data; a reading whose source failed is
    None too, with the reason in ``errors`` under the reading's name."""

    new_requests: float | None = None
    new_errors: float | None = None
    legacy_requests: float | None = None
    new_p95: float | None = None
    legacy_p95: float | None = None
    new_memory: float | None = None
    shadow_comparisons: float | None = None
    shadow_mismatches: float | None = None
    errors: dict[str, str] = field(default_factory=dict)
    # The same readings over the last interval alone (embedded source only): a sudden
    # failure shows there at once instead of being diluted by a window of healthy traffic.
    recent: Observation | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """One migration as a source reads it: its requests to ``target`` and ``source``, and
    ``since`` (monotonic): readings from before it are not held against ``target``."""

    name: str
    source: str
    target: str
    since: float | None = None


Key = tuple[str, str]  # (migration, backend)


@dataclass
class CounterSnapshot:
    """The proxy's cumulative counters at one instant, per migration and backend."""

    requests: dict[Key, float]
    errors: dict[Key, float]
    buckets: dict[Key, list[float]]  # cumulative counts per upper bound, +Inf last
    shadow: dict[Key, float]  # mirrored requests by (migration, ShadowResult)
    # Which run of the process counted them (fleet counters): counts start again at a new one.
    boot: str = ""

    def bucket(self, key: Key) -> list[float]:
        return self.buckets.get(key) or _EMPTY


BOUNDS = (*LATENCY_BUCKETS, math.inf)
_EMPTY = [0.0] * len(BOUNDS)
# The mirrored requests whose two answers were compared (the others failed or were dropped).
COMPARED = (ShadowResult.MATCH, ShadowResult.MISMATCH)


def read_counters(metrics: Metrics) -> CounterSnapshot:
    requests: dict[Key, float] = {}
    errors: dict[Key, float] = {}
    buckets: dict[Key, list[float]] = {}
    shadow: dict[Key, float] = {}
    index = {bound: i for i, bound in enumerate(BOUNDS)}
    for family in metrics.collect():
        for sample in family.samples:
            name, labels = sample.name, sample.labels
            if name == "cutover_requests_total":
                key = (labels["migration"], labels["backend"])
                requests[key] = requests.get(key, 0.0) + sample.value
                if labels["code"] in ("5xx", "error"):
                    errors[key] = errors.get(key, 0.0) + sample.value
            elif name == "cutover_request_duration_seconds_bucket":
                key = (labels["migration"], labels["backend"])
                counts = buckets.get(key)
                if counts is None:
                    counts = buckets[key] = [0.0] * len(BOUNDS)
                counts[index[float(labels["le"])]] += sample.value
            elif name == "cutover_shadow_requests_total":
                key = (labels["migration"], labels["result"])
                shadow[key] = shadow.get(key, 0.0) + sample.value
    return CounterSnapshot(requests, errors, buckets, shadow)


def p95(cumulative: list[float]) -> float | None:
    per_bucket = [b - a for a, b in zip([0.0, *cumulative], cumulative, strict=False)]
    value = histogram_quantile(0.95, BOUNDS, per_bucket)
    return None if math.isnan(value) else value


class EmbeddedSource:
    """Readings from this proxy's own metrics: the difference between now and the
    snapshot taken ``window`` seconds ago (what PromQL's ``increase`` computes)."""

    def __init__(self, metrics: Metrics, window: float) -> None:
        self.metrics = metrics
        self.window = window
        self._snapshots: deque[tuple[float, CounterSnapshot]] = deque()

    async def observe(self, now: float, subjects: Sequence[Subject]) -> dict[str, Observation]:
        """Each subject's readings over the window. Counts from before a subject's ``since``
        are not used (the first reading after it is the new base, so the next evaluation
        has data). ``now`` and ``since`` are monotonic."""
        latest = await self.latest(now)
        self._snapshots.append((now, latest))
        # Keep the newest snapshot at least `window` old as the base; drop older ones.
        while len(self._snapshots) > 1 and self._snapshots[1][0] <= now - self.window:
            self._snapshots.popleft()
        return {subject.name: self._observe(subject, latest) for subject in subjects}

    async def read_local(self) -> CounterSnapshot:
        # Off the event loop: with several workers it reads every worker's metric files, and
        # with many migrations it walks thousands of series (~0.1 s for 200 migrations).
        return await asyncio.to_thread(read_counters, self.metrics)

    async def latest(self, now: float) -> CounterSnapshot:
        """The cumulative counters the window is kept over: this proxy's own (the fleet's
        sum in ``FleetSource``)."""
        return await self.read_local()

    def _observe(self, subject: Subject, latest: CounterSnapshot) -> Observation:
        since = subject.since
        usable = [s for at, s in self._snapshots if since is None or at >= since]
        if len(usable) < 2:
            return Observation()
        observation = difference(latest, usable[0], subject)
        observation.recent = difference(latest, usable[-2], subject)
        return observation


def subtract(latest: list[float], base: list[float]) -> list[float]:
    return [a - b for a, b in zip(latest, base, strict=True)]


def difference(latest: CounterSnapshot, base: CounterSnapshot, subject: Subject) -> Observation:
    to, of = (subject.name, subject.target), (subject.name, subject.source)
    mismatch = (subject.name, ShadowResult.MISMATCH)
    compared = [(subject.name, result) for result in COMPARED]
    return Observation(
        new_requests=latest.requests.get(to, 0.0) - base.requests.get(to, 0.0),
        new_errors=latest.errors.get(to, 0.0) - base.errors.get(to, 0.0),
        legacy_requests=latest.requests.get(of, 0.0) - base.requests.get(of, 0.0),
        new_p95=p95(subtract(latest.bucket(to), base.bucket(to))),
        legacy_p95=p95(subtract(latest.bucket(of), base.bucket(of))),
        shadow_comparisons=sum(
            latest.shadow.get(k, 0.0) - base.shadow.get(k, 0.0) for k in compared
        ),
        shadow_mismatches=latest.shadow.get(mismatch, 0.0) - base.shadow.get(mismatch, 0.0),
    )


class ScrapeError(Exception):
    """A backend's /metrics could not be read or had no resident memory."""


def resident_memory(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "process_resident_memory_bytes":
            for sample in family.samples:
                return float(sample.value)
    raise ScrapeError("no process_resident_memory_bytes in the metrics")


class MemoryScraper:
    """Reads ``process_resident_memory_bytes`` from each backend that has a metrics_url."""

    def __init__(
        self,
        urls: dict[str, str],
        metrics: Metrics,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        ca_files: Mapping[str, Path | None] | None = None,
    ) -> None:
        """``ca_files``: per backend, the CA bundle for an https:// metrics URL."""
        self.urls = urls
        self.metrics = metrics
        ca_files = ca_files or {}
        # Scrapes come every guard interval; servers close idle connections after a few
        # seconds (uvicorn: 5), so a kept connection races the server's close. Don't keep one.
        self._clients = {
            backend: httpx.AsyncClient(
                timeout=timeout,
                transport=transport,
                trust_env=False,
                limits=httpx.Limits(max_keepalive_connections=0),
                verify=client_context(ca_files.get(backend)),
            )
            for backend in urls
        }

    async def scrape(self, backend: str) -> float:
        try:
            response = await self._clients[backend].get(self.urls[backend])
            response.raise_for_status()
            value = resident_memory(response.text)
        except (httpx.HTTPError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ScrapeError(f"{self.urls[backend]}: {reason}") from exc
        self.metrics.backend_memory.labels(backend).set(value)
        return value

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
