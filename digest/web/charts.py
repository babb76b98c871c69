"""Charts for /admin, drawn on the server as SVG: they need no JavaScript and show in a
locked-down browser. Each has a <title> and <desc> for screen readers, and the page puts
a table of its figures beside it.

A chart is as wide as its column and keeps its text at its real size, on a phone as at a
desk: the outer SVG has no viewBox (its text is placed in per cent of the width and in
pixels down), and only the plot inside it is stretched to fit (a nested SVG with its own
viewBox). Its strokes do not stretch with it (``vector-effect="non-scaling-stroke"``), so
lines stay 2 px and the dots on a line stay round.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["HEIGHT", "PALETTE", "PLOT_WIDTH", "Chart", "bar_chart", "line_chart"]

# The chart's height in pixels; the plot's own width, stretched to the column's.
HEIGHT = 220
PLOT_WIDTH = 1000
# The plot's place in the chart, in pixels: below the top label, above the axis labels
# and the legend.
_TOP, _BOTTOM = 22, 44
_PLOT_HEIGHT = HEIGHT - _TOP - _BOTTOM
_FONT = 'font-size="12" fill="currentColor"'
_UNSTRETCHED = 'vector-effect="non-scaling-stroke"'
# Colours told apart by people with the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7")


@dataclass(frozen=True, slots=True)
class Chart:
    """A drawn chart and the figures it shows (for the table beside it)."""

    svg: Markup
    title: str
    labels: tuple[str, ...]
    series: tuple[tuple[str, tuple[float, ...]], ...]


def _frame(
    title: str,
    description: str,
    top: float,
    plot: list[str],
    under: tuple[str, str],
    names: Sequence[str],
) -> Markup:
    """The chart around ``plot``: ``under`` is written under its left and right ends."""
    # Ids unique on the page, which shows several charts.
    ident = "chart-" + re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-")
    bottom = _TOP + _PLOT_HEIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" height="{HEIGHT}" '
        f'role="img" aria-labelledby="{ident}-t {ident}-d" class="chart">',
        f'<title id="{ident}-t">{escape(title)}</title>'
        f'<desc id="{ident}-d">{escape(description)}</desc>',
        # The scale: the top line's value above it, the base line at 0.
        f'<text x="0" y="{_TOP - 6}" {_FONT}>{top:,g}</text>',
        f'<line x1="0" y1="{_TOP}" x2="100%" y2="{_TOP}" stroke="currentColor" '
        'stroke-opacity="0.15"/>',
        f'<line x1="0" y1="{bottom}" x2="100%" y2="{bottom}" stroke="currentColor" '
        'stroke-opacity="0.4"/>',
        f'<svg class="plot" x="0" y="{_TOP}" width="100%" height="{_PLOT_HEIGHT}" '
        f'viewBox="0 0 {PLOT_WIDTH} {_PLOT_HEIGHT}" preserveAspectRatio="none" '
        # A dot on the top line or at either end is drawn whole.
        'overflow="visible">',
        *plot,
        "</svg>",
    ]
    left, right = under
    parts.append(f'<text x="0" y="{bottom + 16}" {_FONT}>{escape(left)}</text>')
    parts.append(
        f'<text x="100%" y="{bottom + 16}" text-anchor="end" {_FONT}>{escape(right)}</text>'
    )
    # The legend, a third of the width per name (three fit on a phone).
    step = 100 / max(len(names), 3)
    for index, name in enumerate(names):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{index * step:.1f}%" y="{HEIGHT - 14}" width="10" height="10" '
            f'fill="{colour}"/>'
            f'<text x="{index * step + 4:.1f}%" y="{HEIGHT - 5}" {_FONT}>{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _scale(series: Sequence[tuple[str, Sequence[float]]]) -> float:
    highest = max((max(values, default=0) for _, values in series), default=0)
    return max(highest, 1)


def _y(value: float, top: float) -> float:
    return _PLOT_HEIGHT - value / top * _PLOT_HEIGHT


def line_chart(
    *,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    markers: bool = False,
) -> Chart:
    """Lines over ``labels`` (days, say), one per series; with ``markers``, a dot on each
    point (so that a single point shows)."""
    top = _scale(series)
    step = PLOT_WIDTH / max(len(labels) - 1, 1)
    plot = []
    for index, (name, values) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        points = " ".join(f"{n * step:.1f},{_y(value, top):.1f}" for n, value in enumerate(values))
        plot.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" {_UNSTRETCHED} '
            f'points="{points}"/>'
        )
        if markers:
            # A line of no length with round ends: a dot that the stretch leaves round.
            plot.extend(
                f'<line x1="{n * step:.1f}" y1="{_y(value, top):.1f}" '
                f'x2="{n * step:.1f}" y2="{_y(value, top):.1f}" stroke="{colour}" '
                f'stroke-width="7" stroke-linecap="round" {_UNSTRETCHED}>'
                f"<title>{escape(labels[n])}: {escape(name)} {value:g}</title></line>"
                for n, value in enumerate(values)
            )
    # A line spans the width: its first and last labels go under its ends.
    under = (labels[0], labels[-1] if len(labels) > 1 else "") if labels else ("", "")
    svg = _frame(title, description, top, plot, under, [name for name, _ in series])
    return Chart(svg, title, tuple(labels), _frozen(series))


def bar_chart(
    *,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    slots: int = 12,
) -> Chart:
    """Stacked bars, one per label (an issue, say), a segment per series, from the left
    in ``slots`` places at least (one bar is not drawn as wide as the chart)."""
    totals = [float(sum(values)) for values in zip(*(v for _, v in series), strict=True)]
    top = max([*totals, 1.0])
    slot = PLOT_WIDTH / max(len(labels), slots, 1)
    plot = []
    for n, label in enumerate(labels):
        x = n * slot + slot * 0.15
        y = float(_PLOT_HEIGHT)
        for index, (name, values) in enumerate(series):
            height = values[n] / top * _PLOT_HEIGHT
            y -= height
            plot.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{height:.1f}" '
                f'fill="{PALETTE[index % len(PALETTE)]}"><title>{escape(label)}: '
                f"{escape(name)} {values[n]:g}</title></rect>"
            )
    # Bars start at the left and need not reach the right: what they span, on the left.
    span = f"{labels[0]} to {labels[-1]}" if len(labels) > 1 else "".join(labels)
    svg = _frame(title, description, top, plot, (span, ""), [name for name, _ in series])
    return Chart(svg, title, tuple(labels), _frozen(series))


def _frozen(
    series: Sequence[tuple[str, Sequence[float]]],
) -> tuple[tuple[str, tuple[float, ...]], ...]:
    return tuple((name, tuple(values)) for name, values in series)
