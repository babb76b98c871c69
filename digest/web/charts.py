"""Charts for /admin, drawn on the server as SVG: they need no JavaScript and show in a
locked-down browser. Each has a <title> and <desc> for screen readers, and the page puts
a table of its figures beside it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["HEIGHT", "PALETTE", "WIDTH", "Chart", "bar_chart", "line_chart"]

WIDTH, HEIGHT = 640, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 12, 12, 36
# Colours told apart by people with the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7")


@dataclass(frozen=True, slots=True)
class Chart:
    """A drawn chart and the figures it shows (for the table beside it)."""

    svg: Markup
    title: str
    labels: tuple[str, ...]
    series: tuple[tuple[str, tuple[float, ...]], ...]


def _frame(title: str, description: str, body: list[str], legend: list[str]) -> Markup:
    # Ids unique on the page, which shows several charts.
    ident = "chart-" + re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{ident}-t {ident}-d" class="chart">',
        f'<title id="{ident}-t">{escape(title)}</title>'
        f'<desc id="{ident}-d">{escape(description)}</desc>',
        *body,
        *legend,
        "</svg>",
    ]
    return Markup("".join(parts))


def _scale(series: Sequence[tuple[str, Sequence[float]]]) -> float:
    highest = max((max(values, default=0) for _, values in series), default=0)
    return max(highest, 1)


def _axes(top: float) -> list[str]:
    bottom_y = HEIGHT - _BOTTOM
    return [
        f'<line x1="{_LEFT}" y1="{bottom_y}" x2="{WIDTH - _RIGHT}" y2="{bottom_y}" '
        'stroke="currentColor" stroke-opacity="0.4"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 10}" text-anchor="end" font-size="11" '
        f'fill="currentColor">{top:g}</text>',
        f'<text x="{_LEFT - 6}" y="{bottom_y}" text-anchor="end" font-size="11" '
        'fill="currentColor">0</text>',
    ]


def _legend(names: Sequence[str]) -> list[str]:
    items = []
    for index, name in enumerate(names):
        x = _LEFT + index * 110
        colour = PALETTE[index % len(PALETTE)]
        items.append(
            f'<rect x="{x}" y="{HEIGHT - 16}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 7}" font-size="11" fill="currentColor">'
            f"{escape(name)}</text>"
        )
    return items


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
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(len(labels) - 1, 1)
    body = _axes(top)
    for index, (_, values) in enumerate(series):
        points = " ".join(
            f"{_LEFT + n * step:.1f},{_TOP + plot_h - value / top * plot_h:.1f}"
            for n, value in enumerate(values)
        )
        colour = PALETTE[index % len(PALETTE)]
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        if markers:
            body.extend(
                f'<circle cx="{_LEFT + n * step:.1f}" '
                f'cy="{_TOP + plot_h - value / top * plot_h:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(labels[n])}: {escape(series[index][0])} {value:g}</title>"
                "</circle>"
                for n, value in enumerate(values)
            )
    if labels:
        body.append(
            f'<text x="{_LEFT}" y="{HEIGHT - _BOTTOM + 14}" font-size="11" fill="currentColor">'
            f"{escape(labels[0])}</text>"
            f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - _BOTTOM + 14}" font-size="11" '
            f'text-anchor="end" fill="currentColor">{escape(labels[-1])}</text>'
        )
    svg = _frame(title, description, body, _legend([name for name, _ in series]))
    return Chart(svg, title, tuple(labels), _frozen(series))


def bar_chart(
    *,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    ticks: Sequence[str] | None = None,
    slots: int = 12,
) -> Chart:
    """Stacked bars, one per label (an issue, say), a segment per series, from the left
    in ``slots`` places at least (one bar is not drawn as wide as the chart); ``ticks``,
    when given, are written under the bars."""
    totals = [float(sum(values)) for values in zip(*(v for _, v in series), strict=True)]
    top = max([*totals, 1.0])
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(len(labels), slots, 1)
    body = _axes(top)
    for n, label in enumerate(labels):
        x = _LEFT + n * slot + slot * 0.15
        if ticks is not None:
            body.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - _BOTTOM + 14}" font-size="11" '
                f'text-anchor="middle" fill="currentColor">{escape(ticks[n])}</text>'
            )
        y = float(_TOP + plot_h)
        for index, (_, values) in enumerate(series):
            height = values[n] / top * plot_h
            y -= height
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{height:.1f}" '
                f'fill="{PALETTE[index % len(PALETTE)]}"><title>{escape(label)}: '
                f"{escape(series[index][0])} {values[n]:g}</title></rect>"
            )
    svg = _frame(title, description, body, _legend([name for name, _ in series]))
    return Chart(svg, title, tuple(labels), _frozen(series))


def _frozen(
    series: Sequence[tuple[str, Sequence[float]]],
) -> tuple[tuple[str, tuple[float, ...]], ...]:
    return tuple((name, tuple(values)) for name, values in series)
