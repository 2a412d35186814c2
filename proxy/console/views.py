"""The migration documents (``Control.current_statuses``) and the samples, shaped for the
templates: what each row and page shows, and which actions the phase allows
(``rollout/transitions.py`` decides; this only mirrors it to grey out a button)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from cutover.console.charts import Series, line_chart, sparkline
from cutover.console.samples import SAMPLE_EVERY, Sample
from cutover.vocabulary import Phase, TransitionKind

SPARK_SECONDS = 600.0  # the overview's sparklines: the last 10 minutes
SPARK_SLOTS = round(SPARK_SECONDS / SAMPLE_EVERY)
CHART_SECONDS = 3600.0  # the migration page's charts: the last hour
WEIGHT = "weight"  # the set-weight action's name in the console's URLs


def allowed(document: dict[str, Any]) -> dict[str, bool]:
    """Which operator actions the migration's phase allows now."""
    phase = document["phase"]
    staged = bool(document["stages"])
    higher = any(stage["weight"] > document["weight"] for stage in document["stages"])
    return {
        TransitionKind.PAUSE: phase == Phase.PROGRESSING,
        TransitionKind.RESUME: staged and phase == Phase.PAUSED,
        TransitionKind.PROMOTE: staged and phase != Phase.ROLLED_BACK and higher,
        TransitionKind.ROLLBACK: phase != Phase.ROLLED_BACK,
        TransitionKind.RESTART: phase == Phase.ROLLED_BACK,
        WEIGHT: True,
    }


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def verdicts(document: dict[str, Any]) -> list[dict[str, str]]:
    """The latest verdicts: check, result, value against threshold."""
    return [
        {
            "check": name,
            "result": str(verdict.get("result", "")),
            "value": _number(verdict.get("value")),
            "threshold": _number(verdict.get("threshold")),
        }
        for name, verdict in document.get("checks", {}).items()
    ]


def stage_text(document: dict[str, Any]) -> str:
    stages, stage = document["stages"], document["stage"]
    if not stages:
        return "manual"
    return f"{0 if stage is None else stage + 1}/{len(stages)}"


def _backends(document: dict[str, Any]) -> list[str]:
    return [document.get("from", "from"), document.get("to", "to")]


def sparklines(document: dict[str, Any], samples: list[Sample]) -> list[dict[str, Any]]:
    """Requests per second to each of the migration's backends, the last 10 minutes."""
    name = document["name"]
    lines = []
    for backend in _backends(document):
        values = [
            (s.traffic.get((name, backend)).rps if (name, backend) in s.traffic else 0.0)  # type: ignore[union-attr]
            for s in samples
        ]
        lines.append({
            "backend": backend,
            "now": values[-1] if values else None,
            "svg": sparkline(values, slots=SPARK_SLOTS, label=f"{backend} requests/s"),
        })  # fmt: skip
    return lines


def charts(document: dict[str, Any], samples: list[Sample], now: float) -> list[Markup]:
    """Weight, error rate and p95 for both backends, the last hour."""
    name, start = document["name"], now - CHART_SECONDS
    weight = Series("weight", [(s.at, s.weights.get(name)) for s in samples])

    def per_backend(field: str, scale: float) -> list[Series]:
        series = []
        for backend in _backends(document):
            points = []
            for s in samples:
                traffic = s.traffic.get((name, backend))
                value = None if traffic is None else getattr(traffic, field)
                points.append((s.at, None if value is None else value * scale))
            series.append(Series(backend, points))
        return series

    return [
        line_chart([weight], start=start, end=now, title="weight to new", unit=" %",
                   floor_top=100.0),
        line_chart(per_backend("error_rate", 100.0), start=start, end=now,
                   title="error rate", unit=" %", floor_top=1.0),
        line_chart(per_backend("p95", 1000.0), start=start, end=now, title="p95 latency",
                   unit=" ms", floor_top=10.0),
    ]  # fmt: skip


def row(document: dict[str, Any], samples: list[Sample]) -> dict[str, Any]:
    """One overview row."""
    breaker = document.get("breaker") or {}
    return {
        "doc": document,
        "stage": stage_text(document),
        "verdicts": verdicts(document),
        "breaker": breaker.get("state", "n/a"),
        "sparklines": sparklines(document, samples),
        "deprecation": document.get("deprecation"),
    }
