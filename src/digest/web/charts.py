"""Bar charts as plain SVG, drawn on the server: the operator page's CSP forbids every script, and presentation
attributes (fill, x, y) are not styles. Each chart carries the table of its numbers for screen readers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 200, 48, 24, 8
# Colours that keep 3:1 against white and against each other's neighbours.
COLOURS = ("#1f5fa8", "#b3261e", "#8a5a00", "#2e7d32")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Chart:
    ident: str
    title: str
    # Series names, in the order of each row's values.
    series: list[str]
    # One row per bucket (hour or day): its label and one value per series.
    rows: list[tuple[str, list[int]]]
    bars: list[Bar]
    ticks: list[tuple[float, int]]
    labels: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def total(self) -> list[int]:
        return [sum(row[1][i] for row in self.rows) for i in range(len(self.series))]


def buckets(now: datetime, count: int, hourly: bool) -> list[str]:
    """The last ``count`` hours (or days) up to ``now``, oldest first, labelled as the store groups them."""
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    end = now.replace(minute=0, second=0, microsecond=0)
    if not hourly:
        end = end.replace(hour=0)
    fmt = "%Y-%m-%d %H" if hourly else "%Y-%m-%d"
    return [(end - step * n).strftime(fmt) for n in range(count - 1, -1, -1)]


def bar_chart(ident: str, title: str, keys: list[str], series: dict[str, dict[str, int]]) -> Chart:
    """Grouped bars: for each key (an hour or a day), one bar per series, scaled to the largest value."""
    names = list(series)
    rows = [(key, [series[name].get(key, 0) for name in names]) for key in keys]
    top = max([1, *(v for _, values in rows for v in values)])
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(1, len(rows))
    width = max(0.5, slot * 0.8 / max(1, len(names)))
    bars = []
    for n, (key, values) in enumerate(rows):
        for s, value in enumerate(values):
            if value:
                height = plot_h * value / top
                bars.append(
                    Bar(
                        x=round(LEFT + n * slot + slot * 0.1 + s * width, 2),
                        y=round(TOP + plot_h - height, 2),
                        width=round(width, 2),
                        height=round(height, 2),
                        fill=COLOURS[s % len(COLOURS)],
                        title=f"{key}: {value} {names[s]}",
                    )
                )
    # Whole numbers only: the top, nought, and the middle when it is one.
    marks = [0, top // 2, top] if top % 2 == 0 and top > 2 else [0, top]
    ticks = [(round(TOP + plot_h - plot_h * mark / top, 2), mark) for mark in marks]
    every = max(1, len(rows) // 6)
    labels = [(round(LEFT + n * slot, 2), key) for n, (key, _) in enumerate(rows) if n % every == 0]
    return Chart(ident, title, names, rows, bars, ticks, labels)
