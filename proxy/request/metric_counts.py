"""The two series every proxied request updates, ``cutover_requests_total`` and
``cutover_request_duration_seconds``, counted in plain numbers on the request path and
turned into metric families only when something reads them (a scrape, the guard's embedded
source, the console): a collector on the metrics' registry.

prometheus-client takes a lock for every increment and walks a histogram's buckets for every
observation; here a request costs two dict lookups, a ``bisect`` and three additions. The
exposition is the same as prometheus-client's own for a Counter and a Histogram (``_total``,
``_created``, cumulative ``le`` buckets, ``_count``, ``_sum``). One process only: with
``--workers N`` the workers' counts must meet in prometheus-client's files, so ``Metrics``
keeps its client-library series there.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from time import time

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

RequestKey = tuple[str, str, str, str, str]  # migration, backend, route, code, cohort
DurationKey = tuple[str, str, str]  # migration, backend, route
REQUEST_LABELS = ("migration", "backend", "route", "code", "cohort")
DURATION_LABELS = ("migration", "backend", "route")


class RequestCounts:
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

    def collect(self) -> Iterator[Metric]:
        # list() copies under the GIL: a reader in another thread sees a consistent set of
        # keys while the loop goes on counting.
        requests = Metric("cutover_requests", self._requests_help, "counter")
        for key, count in list(self.requests.items()):
            labels = dict(zip(REQUEST_LABELS, key, strict=True))
            requests.add_sample("cutover_requests_total", labels, float(count))
            requests.add_sample("cutover_requests_created", labels, self.created[key])
        yield requests
        name = "cutover_request_duration_seconds"
        durations = Metric(name, self._duration_help, "histogram")
        for key, row in list(self.durations.items()):
            values = list(row)
            labels = dict(zip(DURATION_LABELS, key, strict=True))
            total = 0.0
            for le, count in zip(self._les, values[:-2], strict=True):
                total += count
                durations.add_sample(f"{name}_bucket", {**labels, "le": le}, total)
            durations.add_sample(f"{name}_count", labels, total)
            durations.add_sample(f"{name}_sum", labels, values[-2])
            durations.add_sample(f"{name}_created", labels, values[-1])
        yield durations
