"""The guard's checks as pure statistics: numbers and arrays in, a verdict out.

Each verdict is one of pass / fail / nodata / error. ``nodata`` never promotes and never
rolls back; ``error`` (the source itself failed) is decided by the guard, not here.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from cutover.vocabulary import CheckResult


@dataclass(frozen=True, slots=True)
class Verdict:
    check: str
    result: CheckResult
    value: float | None = None
    threshold: float | None = None
    detail: str = ""
    # A failure of a check that only gates promotion (shadow, by default) never rolls back.
    rolls_back: bool = True

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _number(value: float | None) -> float | None:
    """None for a missing or NaN reading, else the float."""
    if value is None or math.isnan(value):
        return None
    return float(value)


def histogram_quantile(q: float, upper_bounds: Sequence[float], counts: Sequence[float]) -> float:
    """The q-quantile of a histogram, interpolated linearly inside the bucket that holds it
    (Prometheus's ``histogram_quantile``). ``counts`` are per bucket (not cumulative), one per
    upper bound; the last bound may be ``inf``. NaN when the histogram is empty.

    Plain Python over a few dozen buckets: as fast as numpy here, and it keeps numpy (20 MB
    of resident memory) out of the proxy process."""
    if len(upper_bounds) != len(counts):
        raise ValueError("upper_bounds and counts must have the same length")
    cumulative = list(itertools.accumulate(float(c) for c in counts))
    total = cumulative[-1] if cumulative else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    index = min(bisect.bisect_left(cumulative, rank), len(upper_bounds) - 1)
    upper = float(upper_bounds[index])
    if math.isinf(upper):
        # Like Prometheus: the quantile is in the +Inf bucket, report the highest finite bound.
        return float(upper_bounds[index - 1]) if index > 0 else math.nan
    lower = float(upper_bounds[index - 1]) if index > 0 else 0.0
    below = cumulative[index - 1] if index > 0 else 0.0
    in_bucket = float(counts[index])
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


def error_rate_check(
    requests: float | None, errors: float | None, *, max_error_rate: float, min_requests: int
) -> Verdict:
    """Share of new's requests that got a 5xx or no response at all."""
    total, failed = _number(requests), _number(errors)
    if total is None or failed is None or total < min_requests:
        seen = int(total or 0)
        detail = f"{seen} requests to new in the window, need {min_requests}"
        return Verdict("error_rate", CheckResult.NODATA, None, max_error_rate, detail)
    rate = failed / total
    result = CheckResult.FAIL if rate > max_error_rate else CheckResult.PASS
    detail = f"{failed:.0f} of {total:.0f} requests failed"
    return Verdict("error_rate", result, rate, max_error_rate, detail)


def latency_check(
    new_p95: float | None,
    legacy_p95: float | None,
    *,
    new_requests: float | None,
    max_latency_ratio: float,
    min_requests: int,
    names: tuple[str, str] = ("new", "legacy"),
) -> Verdict:
    """new's p95 against legacy's p95 (the caller passes the last good legacy p95 when
    legacy had too little traffic in the window); ``names``: the two backends' (to, from)."""
    new, legacy, seen = _number(new_p95), _number(legacy_p95), _number(new_requests)
    if seen is None or seen < min_requests or new is None:
        return Verdict(
            "latency",
            CheckResult.NODATA,
            None,
            max_latency_ratio,
            f"too few requests to {names[0]}",
        )
    if legacy is None or legacy <= 0:
        # No legacy baseline (or a zero one, which no ratio can be taken against).
        detail = f"no {names[1]} latency to compare with"
        return Verdict("latency", CheckResult.NODATA, None, max_latency_ratio, detail)
    ratio = new / legacy
    result = CheckResult.FAIL if ratio > max_latency_ratio else CheckResult.PASS
    detail = f"p95 {names[0]} {new * 1000:.1f} ms vs {names[1]} {legacy * 1000:.1f} ms"
    return Verdict("latency", result, ratio, max_latency_ratio, detail)


def memory_check(
    current_bytes: float | None, baseline_bytes: float | None, *, max_memory_ratio: float
) -> Verdict:
    """new's resident memory against its memory when the rollout started."""
    current, baseline = _number(current_bytes), _number(baseline_bytes)
    if current is None or baseline is None or baseline <= 0:
        detail = "no memory reading or baseline"
        return Verdict("memory", CheckResult.NODATA, None, max_memory_ratio, detail)
    ratio = current / baseline
    result = CheckResult.FAIL if ratio > max_memory_ratio else CheckResult.PASS
    detail = f"{current / 2**20:.1f} MiB vs baseline {baseline / 2**20:.1f} MiB"
    return Verdict("memory", result, ratio, max_memory_ratio, detail)


def shadow_check(
    comparisons: float | None,
    mismatches: float | None,
    *,
    max_mismatch_rate: float,
    min_requests: int,
    rolls_back: bool,
) -> Verdict:
    """Share of mirrored requests whose two answers differed beyond the tolerance."""
    total, differed = _number(comparisons), _number(mismatches)
    if total is None or differed is None or total < min_requests:
        detail = f"{int(total or 0)} comparisons in the window, need {min_requests}"
        return Verdict("shadow", CheckResult.NODATA, None, max_mismatch_rate, detail, rolls_back)
    rate = differed / total
    result = CheckResult.FAIL if rate > max_mismatch_rate else CheckResult.PASS
    detail = f"{differed:.0f} of {total:.0f} comparisons differed"
    return Verdict("shadow", result, rate, max_mismatch_rate, detail, rolls_back)


def source_error(
    check: str, message: str, threshold: float | None = None, *, rolls_back: bool = True
) -> Verdict:
    return Verdict(check, CheckResult.ERROR, None, threshold, message, rolls_back)
