"""Charts as SVG, drawn here from the samples: no script draws them, so they are there
before any script runs, and they print. Series are coloured by CSS class (``s0``, ``s1``:
the migration's from and to)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

Point = tuple[float, float | None]  # (x, y); y None: no reading there, the line breaks


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    points: Sequence[Point]


def _paths(points: Sequence[Point], x0: float, x1: float, top: float, h: float, w: float,
           pad: float) -> list[str]:  # fmt: skip
    """One polyline's points per unbroken run of readings."""
    runs: list[list[str]] = [[]]
    span = (x1 - x0) or 1.0
    for x, y in points:
        if y is None:
            if runs[-1]:
                runs.append([])
            continue
        px = pad + (x - x0) / span * (w - 2 * pad)
        py = pad + h - (y / top) * h if top else pad + h
        runs[-1].append(f"{px:.1f},{py:.1f}")
    return [" ".join(run) for run in runs if run]


def sparkline(values: Sequence[float | None], *, slots: int = 60, width: int = 120,
              height: int = 22, label: str = "") -> Markup:  # fmt: skip
    """A small line of ``values`` (oldest first, one per slot; fewer than ``slots`` end at
    the right edge: now), scaled to its own maximum."""
    top = max((v for v in values if v is not None), default=0.0)
    span = max(slots, len(values)) - 1
    first = span - (len(values) - 1)
    points = [(float(first + i), v) for i, v in enumerate(values)]
    lines = _paths(points, 0.0, float(max(1, span)), top, height - 4, width, 2)
    body = "".join(f'<polyline points="{p}"/>' for p in lines)
    title = escape(f"{label} (max {top:.3g})")
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{title}"><title>{title}</title>{body}</svg>'
    )


def line_chart(series: Sequence[Series], *, start: float, end: float, title: str,
               unit: str = "", width: int = 560, height: int = 150,
               floor_top: float = 0.0) -> Markup:  # fmt: skip
    """Each series' points over ``start``..``end`` (Unix seconds), one scale for all."""
    top = max([floor_top, *(y for s in series for _, y in s.points if y is not None)])
    pad, plot_h = 24, height - 48
    lines = []
    for i, one in enumerate(series):
        for path in _paths(one.points, start, end, top, plot_h, width, pad):
            lines.append(f'<polyline class="s{i}" points="{path}"/>')
    legend = "".join(
        f'<tspan class="s{i}" dx="12">■ {escape(one.label)}</tspan>' for i, one in enumerate(series)
    )
    span = end - start
    since = f"-{round(span / 60)} min" if span >= 120 else f"-{round(span)} s"
    bottom = pad + plot_h
    return Markup(
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}">'
        f'<text x="{pad}" y="14" class="title">{escape(title)}</text>'
        f'<text x="{width - pad}" y="14" text-anchor="end">{legend}</text>'
        f'<line class="axis" x1="{pad}" y1="{bottom}" x2="{width - pad}" y2="{bottom}"/>'
        f'<line class="grid" x1="{pad}" y1="{pad}" x2="{width - pad}" y2="{pad}"/>'
        f'<text x="{pad + 2}" y="{pad + 11}" class="tick">{top:.3g}{escape(unit)}</text>'
        f'<text x="{pad}" y="{bottom + 14}" class="tick">{since}</text>'
        f'<text x="{width - pad}" y="{bottom + 14}" class="tick" text-anchor="end">now</text>'
        f"{''.join(lines)}</svg>"
    )
