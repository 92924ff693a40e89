"""Server-rendered SVG charts: axes with units, a legend, and a hover value (``<title>``) on
every mark. No script and no external resource, so a chart works offline and in a static file.

Every label and value text goes through ``html.escape``: task and validator names come from
stored records, which whoever called the model controls.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["BLUE", "GREEN", "GREY", "RED", "Series", "bar_rows", "nice_ticks", "time_chart"]

BLUE, GREY, RED, GREEN = "#2f6db5", "#a9b1bb", "#c4463a", "#3a8f5c"
_W, _H = 520, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 12, 14, 34


class Series(NamedTuple):
    """One named, coloured sequence of values, one per x label (None: unknown, not drawn)."""

    name: str
    color: str
    values: Sequence[float | None]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least ``top`` (about ``count`` steps)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _tick(fmt: Callable[[float], str], value: float) -> str:
    """An axis tick without the noise of its unit's full precision: ``$0``, ``$0.02``."""
    text = fmt(value)
    if "." in text:
        head, _, tail = text.partition(".")
        digits = tail.rstrip("0123456789")
        kept = tail[: len(tail) - len(digits)].rstrip("0")
        text = head + ("." + kept if kept else "") + digits
    return text


def time_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Callable[[float], str],
    title: str,
    kind: str = "bar",
    hover: Callable[[int], str] | None = None,
    short: Callable[[str], str] = str,
) -> str:
    """A chart of values over labelled points (days or hours): grouped bars or lines.

    Args:
        labels: the x axis, one per point, oldest first (``short`` writes them on the axis;
            the hover text has them whole).
        series: what is drawn; each has one value per label.
        fmt: formats a y value with its unit (axis ticks and hover text).
        title: the chart's accessible name and caption.
        kind: ``bar`` (grouped bars) or ``line``.
        hover: the hover text of point i (default: each series' value).
    """
    if not labels:
        return f'<p class="empty">{_e(title)}: no data in this span.</p>'
    values = [v for s in series for v in s.values if v is not None]
    ticks = nice_ticks(max(values, default=0.0))
    top = ticks[-1] or 1.0
    span_x, span_y = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = span_x / len(labels)

    def y(v: float) -> float:
        return _TOP + span_y - v / top * span_y

    body = [f"<title>{_e(title)}</title>"]
    for t in ticks:  # horizontal grid with the unit on each tick
        body.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end">'
            f"{_e(_tick(fmt, t))}</text>"
        )
    every = max(1, math.ceil(len(labels) / 8))  # at most about 8 x labels
    for i, label in enumerate(labels):
        if i % every == 0:
            x = _LEFT + slot * (i + 0.5)
            body.append(
                f'<text class="tick" x="{x:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">'
                f"{_e(short(label))}</text>"
            )
    body.append(
        f'<line class="axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}"/>'
    )
    if kind == "bar":
        width = min(slot * 0.8 / max(len(series), 1), 48)
        # A 1-unit gap between bars where they are wide enough; narrow ones (hundreds of
        # hours) touch rather than get a negative width.
        drawn = width - 1 if width > 2 else width * 0.9
        for i in range(len(labels)):
            x0 = _LEFT + slot * (i + 0.5) - width * len(series) / 2
            for j, s in enumerate(series):
                v = s.values[i]
                if v is None:
                    continue
                h = max(y(0) - y(v), 1.0 if v else 0.0)
                body.append(
                    f'<rect x="{x0 + j * width:.1f}" y="{y(0) - h:.1f}" width="{drawn:.2f}" '
                    f'height="{h:.1f}" fill="{s.color}"/>'
                )
    else:
        for s in series:
            # One line per run of known values: an unknown point (no call that day or
            # hour) is a gap, not a line drawn through it.
            runs: list[list[tuple[float, float]]] = [[]]
            for i, v in enumerate(s.values):
                if v is None:
                    runs.append([])
                else:
                    runs[-1].append((_LEFT + slot * (i + 0.5), y(v)))
            for points in runs:
                if len(points) > 1:
                    path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
                    body.append(f'<polyline fill="none" stroke="{s.color}" stroke-width="2" '
                                f'points="{path}"/>')  # fmt: skip
                body += [
                    f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{s.color}"/>'
                    for px, py in points
                ]
    for i, label in enumerate(labels):  # a transparent column per point carries its hover text
        text = hover(i) if hover else "; ".join(
            f"{s.name} {fmt(v) if v is not None else 'unknown'}"
            for s in series for v in (s.values[i],)
        )  # fmt: skip
        body.append(
            f'<rect class="hit" x="{_LEFT + slot * i:.1f}" y="{_TOP}" width="{slot:.1f}" '
            f'height="{span_y}"><title>{_e(label)}: {_e(text)}</title></rect>'
        )
    legend = "".join(
        f'<span class="key"><svg class="swatch" width="12" height="12" aria-hidden="true">'
        f'<rect width="12" height="12" fill="{s.color}"/></svg>{_e(s.name)}</span>'
        for s in series
    )
    svg = (
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{_e(title)}">{"".join(body)}</svg>'
    )
    return (
        f'<figure class="chart"><figcaption>{_e(title)}<span class="legend">{legend}</span>'
        f"</figcaption>{svg}</figure>"
    )


def bar_rows(
    rows: Sequence[tuple[str, float, str, str]],
    *,
    title: str,
    color: str = BLUE,
    top: float | None = None,
    intervals: Sequence[tuple[float, float] | None] = (),
) -> str:
    """Horizontal bars, one per row of (label, value, value as shown, hover text).

    ``top`` is the value of a full bar (default the largest value); ``intervals`` (one per
    row, or none) are drawn as whiskers over the bars.
    """
    if not rows:
        return f'<p class="empty">{_e(title)}: nothing to show.</p>'
    top = top or max(v for _, v, _, _ in rows) or 1.0
    label_w, value_w, row = 130, 150, 24
    span = _W - label_w - value_w
    height = row * len(rows) + 8
    body = [f"<title>{_e(title)}</title>"]
    for i, (label, value, shown, text) in enumerate(rows):
        y0 = 4 + i * row
        w = max(value / top * span, 1.0 if value else 0.0)
        short = label if len(label) <= 18 else label[:17] + "\u2026"
        whisker = ""
        if i < len(intervals) and intervals[i] is not None:
            low, high = intervals[i]  # type: ignore[misc]
            x1, x2 = label_w + low / top * span, label_w + high / top * span
            ym = y0 + 11
            whisker = (
                f'<path class="ci" d="M{x1:.1f},{ym}H{x2:.1f}M{x1:.1f},{ym - 4}V{ym + 4}'
                f'M{x2:.1f},{ym - 4}V{ym + 4}"/>'
            )
        body.append(
            f"<g><title>{_e(label)}: {_e(text)}</title>"
            f'<text class="tick" x="{label_w - 8}" y="{y0 + 15}" text-anchor="end">{_e(short)}'
            f'</text><rect class="track" x="{label_w}" y="{y0 + 3}" width="{span}" height="16"/>'
            f'<rect x="{label_w}" y="{y0 + 3}" width="{w:.1f}" height="16" fill="{color}"/>'
            f'{whisker}<text class="value" x="{label_w + span + 8}" y="{y0 + 15}">{_e(shown)}'
            "</text></g>"
        )
    return (
        f'<figure class="chart"><figcaption>{_e(title)}</figcaption>'
        f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" aria-label="{_e(title)}">'
        f"{''.join(body)}</svg></figure>"
    )
