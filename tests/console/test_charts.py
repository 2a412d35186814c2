"""The SVG charts: a missing reading breaks the line instead of drawing it at zero, and
labels are escaped."""

from __future__ import annotations

from cutover.console.charts import Series, line_chart, sparkline


def test_a_gap_breaks_the_line() -> None:
    svg = line_chart(
        [Series("new", [(0.0, 1.0), (10.0, None), (20.0, 2.0), (30.0, 3.0)])],
        start=0.0, end=30.0, title="p95", unit=" ms",
    )  # fmt: skip
    assert svg.count("<polyline") == 2
    assert "-30 s" in svg and "now" in svg and "3 ms" in svg


def test_labels_are_escaped_and_an_empty_series_draws_no_line() -> None:
    svg = line_chart([Series("<b>", [])], start=0.0, end=3600.0, title="a<b", floor_top=1.0)
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "<polyline" not in svg
    assert "-60 min" in svg
    assert "<polyline" in sparkline([0.0, 1.0, None, 2.0], label="rps")


def test_a_short_sparkline_ends_at_the_right_edge() -> None:
    # Two samples of 60 slots: the last two slots, at the right edge (2 px padding).
    assert 'points="116.0,2.0 118.0,2.0"' in sparkline([1.0, 1.0], slots=60, width=120)
    assert 'points="2.0,2.0 118.0,2.0"' in sparkline([1.0, 1.0], slots=2, width=120)
