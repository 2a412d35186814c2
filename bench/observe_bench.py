"""How much observing one request costs on the hot path, side by side in one run.

Compares ``Metrics.observe`` (plain numbers, ``metric_counts.py``) with prometheus-client's
own Counter and Histogram (``labels(...).inc()/observe()``, as Cutover counted before issue
17, and as it still does with ``--workers N``) and with a bare counter child's increment, in
interleaved rounds. Prints nanoseconds per request and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import timeit

from prometheus_client import CollectorRegistry, Counter, Histogram

from cutover.request.metric_counts import DURATION_LABELS, REQUEST_LABELS
from cutover.request.metrics import LATENCY_BUCKETS, Metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()

    metrics = Metrics()
    registry = CollectorRegistry()
    requests = Counter("requests", "h", REQUEST_LABELS, registry=registry)
    duration = Histogram("duration", "h", DURATION_LABELS, buckets=LATENCY_BUCKETS,
                         registry=registry)  # fmt: skip

    def ours() -> None:
        metrics.observe("bench", "new", "default", "2xx", 0.0123, "weight")

    def labels_each_time() -> None:
        requests.labels("bench", "new", "default", "2xx", "weight").inc()
        duration.labels("bench", "new", "default").observe(0.0123)

    child = requests.labels("bench", "legacy", "default", "2xx", "weight")

    def bare_counter() -> None:
        child.inc()

    candidates = {"Metrics.observe": ours, "labels() each call": labels_each_time,
                  "bare counter inc": bare_counter}  # fmt: skip
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.rounds):
        for name, fn in candidates.items():
            seconds = timeit.timeit(fn, number=args.number)
            results[name].append(seconds / args.number * 1e9)
    medians = {name: statistics.median(values) for name, values in results.items()}
    base = medians["Metrics.observe"]
    print(f"{'per request':<22}{'ns (median)':>12}{'vs observe':>12}")
    for name, ns in medians.items():
        print(f"{name:<22}{ns:>12.0f}{ns / base:>12.2f}")
    budget_ns = 77_000  # one request's CPU time (bench/README.md, issue 17's run)
    print(f"\nMetrics.observe is {100 * base / budget_ns:.1f}% of a request's CPU time "
          f"({budget_ns / 1000:.0f} µs)")  # fmt: skip


if __name__ == "__main__":
    main()
