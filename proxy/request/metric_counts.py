"""The series the request path updates, counted in plain numbers there and turned into metric
families only when something reads them (a scrape, the guard's embedded source, the console):
collectors on the metrics' registry. ``RequestCounts`` keeps ``cutover_requests_total`` and
``cutover_request_duration_seconds`` (every proxied request), ``CounterCounts`` one counter
such as ``cutover_upstream_errors_total``.

prometheus-client takes a lock for every increment and walks a histogram's buckets for every
observation; here a request costs two dict lookups, a ``bisect`` and three additions. The
exposition is the same as prometheus-client's own for a Counter and a Histogram (``_total``,
``_created``, cumulative ``le`` buckets, ``_count``, ``_sum``). One process only: with
``--workers N`` the workers' counts must meet in prometheus-client's files, so ``Metrics``
keeps its client-library series there (``hot_counter`` hands out either kind).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from time import time
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter
from prometheus_client import metrics as client_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LabelValues = tuple[str, ...]
RequestKey = tuple[str, str, str, str, str]  # migration, backend, route, code, cohort
DurationKey = tuple[str, str, str]  # migration, backend, route
REQUEST_LABELS = ("migration", "backend", "route", "code", "cohort")
DURATION_LABELS = ("migration", "backend", "route")
Key = TypeVar("Key", bound=LabelValues)


def with_created() -> bool:
    """Whether prometheus-client exposes ``_created`` samples (PROMETHEUS_DISABLE_CREATED_SERIES
    turns them off for its own series; these follow it)."""
    return getattr(client_metrics, "_use_created", True)


def counter_family(
    name: str,
    documentation: str,
    label_names: Sequence[str],
    counts: dict[Key, int],
    created: dict[Key, float],
) -> Metric:
    family = Metric(name, documentation, "counter")
    stamped = with_created()
    # copy() is one C call under the GIL: a reader in another thread (the admin's /metrics)
    # sees a consistent set of keys while the loop goes on counting.
    for key, count in counts.copy().items():
        labels = dict(zip(label_names, key, strict=True))
        family.add_sample(f"{name}_total", labels, float(count))
        if stamped:
            family.add_sample(f"{name}_created", labels, created[key])
    return family


class RequestCounts(Collector):
    """The counts, and the collector that exposes them (``collect``)."""

    def __init__(
        self, buckets: Sequence[float], requests_help: str, duration_help: str
    ) -> None:  # fmt: skip
        self.bounds = tuple(buckets)
        self._les = [floatToGoString(bound) for bound in self.bounds] + ["+Inf"]
        self._requests_help = requests_help
        self._duration_help = duration_help
        self.requests: dict[RequestKey, int] = {}
        self.created: dict[RequestKey, float] = {}
        # Per key: a count per bucket (the last one +Inf, not cumulative), the sum, created.
        self.durations: dict[DurationKey, list[float]] = {}

    def add(self, key: RequestKey, duration: DurationKey, seconds: float) -> None:
        requests = self.requests
        count = requests.get(key)
        if count is None:
            self.created[key] = time()
            requests[key] = 1
        else:
            requests[key] = count + 1
        row = self.durations.get(duration)
        if row is None:
            row = self.durations[duration] = [0] * (len(self.bounds) + 1) + [0.0, time()]
        row[bisect_left(self.bounds, seconds)] += 1  # the first bound >= seconds: le
        row[-2] += seconds

    def describe(self) -> Iterator[Metric]:
        """The families' names, for the registry to refuse a second series of the same name."""
        yield Metric("cutover_requests", self._requests_help, "counter")
        yield Metric("cutover_request_duration_seconds", self._duration_help, "histogram")

    def collect(self) -> Iterator[Metric]:
        yield counter_family("cutover_requests", self._requests_help, REQUEST_LABELS,
                             self.requests, self.created)  # fmt: skip
        name = "cutover_request_duration_seconds"
        durations = Metric(name, self._duration_help, "histogram")
        stamped = with_created()
        for key, row in self.durations.copy().items():
            values = list(row)
            labels = dict(zip(DURATION_LABELS, key, strict=True))
            total = 0.0
            for le, count in zip(self._les, values[:-2], strict=True):
                total += count
                durations.add_sample(f"{name}_bucket", {**labels, "le": le}, total)
            durations.add_sample(f"{name}_count", labels, total)
            durations.add_sample(f"{name}_sum", labels, values[-2])
            if stamped:
                durations.add_sample(f"{name}_created", labels, values[-1])
        yield durations


class LabelledCounter(Protocol):
    def inc(self, key: LabelValues) -> None:
        """One more for the series of these label values (in the order of the label names)."""


class CounterCounts(Collector):
    """One counter counted in a dict by its label values; a collector (``collect``)."""

    def __init__(self, name: str, documentation: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(label_names)
        self.counts: dict[LabelValues, int] = {}
        self.created: dict[LabelValues, float] = {}

    def inc(self, key: LabelValues) -> None:
        counts = self.counts
        count = counts.get(key)
        if count is None:
            self.created[key] = time()
            counts[key] = 1
        else:
            counts[key] = count + 1

    def describe(self) -> Iterator[Metric]:
        yield Metric(self.name, self.documentation, "counter")

    def collect(self) -> Iterator[Metric]:
        yield counter_family(self.name, self.documentation, self.label_names, self.counts,
                             self.created)  # fmt: skip


class ClientCounter:
    """A prometheus-client counter with its children kept by label values (``labels()``
    takes a lock on every call): the kind that writes to the workers' files."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self._children: dict[LabelValues, Counter] = {}

    def inc(self, key: LabelValues) -> None:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.counter.labels(*key)
        child.inc()


def hot_counter(
    registry: CollectorRegistry,
    name: str,
    documentation: str,
    label_names: Sequence[str],
    *,
    plain: bool,
) -> LabelledCounter:
    """A counter the request path increments: in plain numbers (``plain``: one process), else
    prometheus-client's, on ``registry`` either way."""
    if not plain:
        return ClientCounter(Counter(name, documentation, label_names, registry=registry))
    counts = CounterCounts(name, documentation, label_names)
    registry.register(counts)
    return counts
