"""The report as one self-contained HTML file: inline CSS and SVG charts, no scripts, no fetches.

Every string that comes from records or configuration (task names, validator names,
reasons, inputs, suggestions) goes through ``html.escape``.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from ._format import iso, money, ms

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..build import Report, TaskReport
    from ..observation import ObservationSummary

__all__ = ["render_html"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
h1{font-size:1.4em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{border-bottom:1px solid #ccc}
.charts{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0}figcaption{color:#555}
svg text{font:11px sans-serif;fill:#444}.sugg li{margin:.3em 0}
code{background:#f4f4f4;padding:0 .2em;white-space:pre-wrap}
"""
_W, _H, _PAD = 360, 160, 32
_BLUE, _GREY, _RED = "#3b6fb6", "#b9b9b9", "#c0504d"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _svg(body: list[str], height: int = _H) -> str:
    return (
        f'<svg width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" role="img">{"".join(body)}</svg>'
    )


def line_chart(points: Sequence[tuple[str, float]], *, top: float = 1.0, pct: bool = True) -> str:
    """An SVG line of values (0..``top``) over labelled points, first and last labelled."""
    if not points:
        return ""
    top = max(top, max(v for _, v in points)) or 1.0
    span_x, span_y = _W - 2 * _PAD, _H - 2 * _PAD
    step = span_x / max(len(points) - 1, 1)
    xy = [(_PAD + i * step, _H - _PAD - v / top * span_y) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    label = f"{top:.0%}" if pct else f"{top:g}"
    body = [
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#999"/>',
        f'<text x="2" y="{_PAD}">{_e(label)}</text>',
        f'<polyline fill="none" stroke="{_BLUE}" stroke-width="2" points="{path}"/>',
        *(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{_BLUE}"/>' for x, y in xy),
        f'<text x="{_PAD}" y="{_H - 8}">{_e(points[0][0])}</text>',
    ]
    if len(points) > 1:
        body.append(
            f'<text x="{_W - _PAD}" y="{_H - 8}" text-anchor="end">{_e(points[-1][0])}</text>'
        )
    return _svg(body)


def bar_chart(
    bars: Sequence[tuple[str, Sequence[float]]], *, colors: Sequence[str], fmt: str = "{:g}"
) -> str:
    """Horizontal SVG bars: one row per label, one bar per value (grouped), value printed."""
    if not bars:
        return ""
    top = max((v for _, vs in bars for v in vs), default=0.0) or 1.0
    row = 8 + 12 * len(colors)
    height = row * len(bars) + 8
    label_w, span = 110, _W - 110 - 70
    body: list[str] = []
    for i, (label, values) in enumerate(bars):
        y0 = 4 + i * row
        body.append(f'<text x="0" y="{y0 + 11}">{_e(label[:18])}</text>')
        for j, (v, color) in enumerate(zip(values, colors, strict=True)):
            w = max(v / top * span, 1.0 if v else 0.0)
            y = y0 + j * 12
            body.append(
                f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="10" fill="{color}"/>'
                f'<text x="{label_w + w + 4:.1f}" y="{y + 9}">{_e(fmt.format(v))}</text>'
            )
    return _svg(body, height)


def _figure(caption: str, svg: str) -> str:
    if not svg:
        return ""
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def _task(t: TaskReport) -> str:
    name = "All tasks" if t.task == "*" else f"Task {t.task}"
    saved = "-" if t.savings_pct is None else f"{t.savings_pct:.1%}"
    stats = [
        ("calls", f"{t.calls:,}"),
        ("escalations", f"{t.escalations:,} ({t.escalation_rate:.1%})"),
        ("not ok", f"{t.not_ok:,}"),
        ("cost", money(t.cost_usd)),
        ("strong model alone", money(t.baseline_cost_usd)),
        ("saved", f"{money(t.savings_usd)} ({saved})"),
        ("latency p50 / p95", f"{ms(t.latency_p50_ms)} / {ms(t.latency_p95_ms)}"),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td class=n>{_e(v)}</td></tr>" for k, v in stats)
    p = t.patterns
    charts = [
        _figure("escalation rate per day", line_chart(
            [(d.day, d.escalations / d.calls if d.calls else 0.0) for d in t.daily])),
        _figure("cost (blue) vs strong model alone (grey), $ per day", bar_chart(
            [(d.day, (d.cost_usd, d.baseline_cost_usd)) for d in t.daily][-14:],
            colors=(_BLUE, _GREY), fmt="{:.4f}")),
        _figure("failures by validator", bar_chart(
            [(v, (float(n),)) for v, n in t.validators.items()][:12], colors=(_RED,))),
        _figure("escalation rate by input size (prompt tokens)", bar_chart(
            [(b.label, (b.rate,)) for b in p.size_buckets], colors=(_BLUE,), fmt="{:.0%}")),
    ]  # fmt: skip
    parts = [f"<h2>{_e(name)}</h2><table>{rows}</table>", '<div class="charts">', *charts, "</div>"]
    if t.top_reasons:
        parts.append("<h3>Why validators failed</h3><table><tr><th>validator</th>"
                     "<th>calls</th><th>reason (example)</th></tr>")  # fmt: skip
        parts += [
            f"<tr><td>{_e(v)}</td><td class=n>{r.calls:,}</td><td><code>{_e(r.example)}</code>"
            "</td></tr>"
            for v, rs in t.top_reasons.items()
            for r in rs[:5]
        ]
        parts.append("</table>")
    if p.terms:
        words = ", ".join(f"<code>{_e(x.term)}</code> (z {x.z:.1f})" for x in p.terms)
        parts.append(f"<p>Words over-represented in escalated inputs: {words}</p>")
    if p.duplicates:
        parts.append("<h3>Near-duplicate escalated inputs</h3><ul>")
        parts += [f"<li>{d.size}&times; <code>{_e(d.example)}</code></li>" for d in p.duplicates]
        parts.append("</ul>")
    if p.suggestions:
        parts.append('<h3>Suggestions</h3><ul class="sugg">')
        parts += [f"<li>{_e(s.message)}</li>" for s in p.suggestions]
        parts.append("</ul>")
    if t.observation is not None:
        parts.append(_observation(t.observation))
    return "\n".join(parts)


def _observation(o: ObservationSummary) -> str:
    """What observe mode saw: the would-be escalations, costs, agreement and the verdict."""
    saved = "-" if o.savings_pct is None else f"{o.savings_pct:.1%}"
    agreement = "-"
    if o.agreement is not None and o.agreement_low is not None and o.agreement_high is not None:
        agreement = (
            f"{o.agreed:,}/{o.compared:,} = {o.agreement:.1%} "
            f"(95% CI {o.agreement_low * 100:.1f}\u2013{o.agreement_high:.1%})"
        )
    stats = [
        ("observed calls", f"{o.calls:,}"),
        ("would escalate", f"{o.escalations:,} ({o.escalation_rate:.1%})"),
        ("strong model cost", money(o.strong_cost_usd)),
        ("projected cascade cost", money(o.projected_cost_usd)),
        ("projected savings", f"{money(o.savings_usd)} ({saved})"),
        ("agreement of would-be-accepted answers", agreement),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td class=n>{_e(v)}</td></tr>" for k, v in stats)
    reasons = "".join(f"<li>{r.calls:,}&times; <code>{_e(r.example)}</code></li>"
                      for r in o.top_reasons)  # fmt: skip
    return (
        f"<h3>Observation</h3><table>{rows}</table>"
        + (f"<p>Would escalate because:</p><ul>{reasons}</ul>" if reasons else "")
        + f"<p><strong>{_e(o.recommendation)}</strong></p>"
    )


def render_html(report: Report) -> str:
    """The report as a standalone HTML document (no external resources, no scripts)."""
    span = f"{iso(report.since) or 'the beginning'} to {iso(report.until) or 'now'}"
    sections = [_task(t) for t in report.tasks]
    if len(report.tasks) > 1:
        sections.append(_task(report.overall))
    if not report.tasks:
        sections.append("<p>No calls recorded in this span.</p>")
    corrupt = (
        f"<p>{report.corrupt_records} unreadable stored records were skipped.</p>"
        if report.corrupt_records
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>cascade report</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>cascade report</h1><p>{_e(span)} (generated {_e(iso(report.generated_at))})</p>"
        f"{corrupt}\n" + "\n".join(sections) + "\n</body></html>\n"
    )
