"""How much observing one request costs on the hot path, side by side in one run.

Compares ``Metrics.observe`` (a counter and a histogram child looked up in our own dict)
with prometheus-client's plain ``labels(...).inc()/observe()`` and with a bare counter
increment, in interleaved rounds. Prints nanoseconds per request and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import timeit

from cutover.request.metrics import Metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()

    metrics = Metrics()
    routes = ["default", "/api/v1/", "/api/v2/"]

    def ours() -> None:
        metrics.observe("new", "/api/v1/", "2xx", 0.0123)

    def labels_each_time() -> None:
        metrics.requests.labels("new", "/api/v1/", "2xx").inc()
        metrics.request_duration.labels("new", "/api/v1/").observe(0.0123)

    child = metrics.requests.labels("legacy", routes[0], "2xx")

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
    budget_ns = 1e9 / 7000  # one request's whole CPU time at ~7,000 req/s on one core
    print(f"\nMetrics.observe is {100 * base / budget_ns:.1f}% of a request's CPU budget "
          f"at 7,000 req/s ({budget_ns / 1000:.0f} µs)")  # fmt: skip


if __name__ == "__main__":
    main()
