"""The look shared by the dashboard and ``cascade report --format html``: the stylesheet, the
page shell, and how numbers are written (money, rates with the counts they rest on, unknown).

The stylesheet is inline and the pages carry no inline script, so the dashboard's Content
Security Policy allows exactly this stylesheet (by its hash) and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "CSP",
    "CSS",
    "UNKNOWN",
    "card",
    "e",
    "interval",
    "money",
    "ms",
    "number",
    "page",
    "pct",
    "rate",
    "table",
]

UNKNOWN = "unknown"

CSS = """
:root{--ink:#1d2733;--muted:#5d6b7a;--line:#e3e7ec;--bg:#f6f8fa;--blue:#2f6db5;--red:#c4463a}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:var(--bg)}
header.top{background:#17324f;color:#fff;padding:.6em 1.5em;display:flex;gap:1.5em;
align-items:center;flex-wrap:wrap}
header.top a{color:#dce8f5;text-decoration:none}header.top a:hover{color:#fff}
header.top .brand{font-weight:700;color:#fff;font-size:1.1em}
header.top form{margin-left:auto}
main{max-width:76em;margin:0 auto;padding:1em 1.5em 3em}
h1{font-size:1.45em;margin:.6em 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em}
h3{font-size:1em;margin:1.2em 0 .4em}
.sub{color:var(--muted);margin:0 0 1em}
a{color:var(--blue)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(15em,1fr));gap:.8em}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.7em .9em}
.card .label{color:var(--muted);font-size:.85em}
.card .value{font-size:1.45em;font-weight:650;font-variant-numeric:tabular-nums}
.card .note{color:var(--muted);font-size:.8em}
.good{color:#2c7a4b}.bad{color:var(--red)}
.panel{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.8em 1em;
margin:.8em 0}
.grid2{display:grid;grid-template-columns:repeat(auto-fill,minmax(30em,1fr));gap:.8em;
margin:.8em 0}.grid2 .panel{margin:0}
figure.chart{margin:0}figure.chart figcaption{font-weight:600;margin-bottom:.3em;display:flex;
flex-wrap:wrap;gap:.4em 1em;align-items:center}
.legend{font-weight:400;color:var(--muted);display:flex;gap:1em}
.key{display:inline-flex;align-items:center;gap:.35em}
svg.chart{width:100%;height:auto;display:block}
svg text{font:12px system-ui,sans-serif;fill:#4a5663}svg text.value{fill:#1d2733}
svg .ci{stroke:#1d2733;stroke-width:1.5;fill:none}
svg .grid{stroke:#eceff3}svg .axis{stroke:#9aa5b1}svg .track{fill:#f1f3f6}
svg .hit{fill:transparent}svg .hit:hover{fill:rgba(47,109,181,.08)}
table.data{border-collapse:collapse;width:100%;background:#fff}
table.data th,table.data td{padding:.35em .6em;border-bottom:1px solid var(--line);
text-align:left;vertical-align:top}
table.data th{font-weight:600;color:var(--muted);font-size:.85em;background:#fafbfc}
table.data td.n,table.data th.n{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}
table.data tr:hover td{background:#f8fafc}
code,pre{font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,monospace}
code{background:#f1f3f6;padding:0 .25em;border-radius:3px;overflow-wrap:anywhere}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:.6em;
white-space:pre-wrap;overflow-wrap:anywhere;max-height:24em;overflow:auto;margin:.3em 0}
form.filters{display:flex;flex-wrap:wrap;gap:.6em 1em;align-items:end;margin:.6em 0}
form.filters label{display:flex;flex-direction:column;font-size:.85em;color:var(--muted)}
input,select,button{font:inherit;padding:.3em .5em;border:1px solid #c5cdd6;border-radius:5px;
background:#fff}
button{background:var(--blue);color:#fff;border-color:var(--blue);cursor:pointer}
.tag{display:inline-block;padding:0 .45em;border-radius:9px;font-size:.8em;background:#eef2f6}
.tag.esc{background:#fdeee3;color:#8a4b14}.tag.bad{background:#fbe5e3;color:var(--red)}
.tag.ok{background:#e4f3ea;color:#2c7a4b}
.empty{color:var(--muted);font-style:italic}
.verdict{font-size:1.05em;font-weight:600}
.login{max-width:26em;margin:4em auto}.login input{width:100%;margin:.4em 0 .8em}
.calls .call{background:#fff;border:1px solid var(--line);border-radius:6px;margin:.3em 0}
.call summary,.call.head{display:grid;
grid-template-columns:11.5em 7.5em 9.5em 9em 5em 5em 1fr;
gap:.6em;padding:.45em .7em;align-items:center;cursor:pointer}
.call summary .when{white-space:nowrap;font-variant-numeric:tabular-nums}
.call summary code{justify-self:start}
.call.head span{font-size:.85em}
.call.head{background:none;border:1px solid transparent;color:var(--muted);
font-weight:600;
cursor:default}
.call summary .preview{color:var(--muted);overflow:hidden;white-space:nowrap;
text-overflow:ellipsis}
.call summary .n,.call.head .n{text-align:right;font-variant-numeric:tabular-nums}
.call[open] summary{border-bottom:1px solid var(--line);background:#f8fafc}
.call .body{padding:.3em 1em 1em}.attempt{border-left:3px solid var(--line);padding-left:.8em;
margin:.8em 0}
.pager{display:flex;gap:1em;margin:.8em 0}
"""

_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
# Nothing loads from anywhere but this origin; no script; no frame; forms post only here.
CSP = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def e(text: object) -> str:
    """``text`` escaped for HTML text and attribute values."""
    return html.escape(str(text), quote=True)


def money(value: float | None) -> str:
    """Dollars: cents above $1, four decimals below, ``unknown`` for None."""
    if value is None:
        return UNKNOWN
    sign = "-" if value < 0 else ""
    v = abs(value)
    return f"{sign}${v:,.2f}" if v >= 1 else f"{sign}${v:.4f}"


def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage, ``unknown`` for None."""
    return UNKNOWN if value is None else f"{value * 100:.{digits}f}%"


def number(value: float | None) -> str:
    """A count with thousands separators (``≈`` and one decimal when it is an estimate)."""
    if value is None:
        return UNKNOWN
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"\u2248{value:,.1f}"


def rate(part: int, whole: float) -> str:
    """``23.0% (23 of 100)``: a rate with the counts it rests on; unknown without a whole."""
    if not whole:
        return f"{UNKNOWN} (0 calls)"
    return f"{part / whole * 100:.1f}% ({part:,} of {number(whole)})"


def interval(
    value: float | None, low: float | None, high: float | None, confidence: float = 0.95
) -> str:
    """``42.0% (95% CI 30.1-55.2%)``; the rate alone without bounds, unknown for None.
    ``confidence`` is the interval's level (a term's is adjusted for its selection)."""
    if value is None:
        return UNKNOWN
    if low is None or high is None:
        return pct(value)
    level = f"{confidence * 100:.4g}"
    return f"{pct(value)} ({level}% CI {low * 100:.1f}\u2013{pct(high)})"


def ms(value: float | None) -> str:
    """Milliseconds as the report gives them: ``≤ 250 ms``; unknown for None."""
    if value is None:
        return UNKNOWN
    if value == float("inf"):
        return "beyond the last bucket"
    return f"\u2264 {value:g} ms"


def card(label: str, value: str, note: str = "", *, field: str = "", raw: object = None) -> str:
    """One figure with its label; ``field``/``raw`` tag it with the report's JSON field
    and exact value, so a test (or a curious reader) can check it against the report."""
    attrs = f' data-field="{e(field)}" data-value="{e(raw)}"' if field else ""
    note_html = f'<div class="note">{e(note)}</div>' if note else ""
    return (
        f'<div class="card"><div class="label">{e(label)}</div>'
        f'<div class="value"{attrs}>{e(value)}</div>{note_html}</div>'
    )


def table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table of already-escaped cells; columns in ``numeric`` are right-aligned."""
    if not rows:
        return '<p class="empty">none</p>'
    cls = [' class="n"' if i in numeric else "" for i in range(len(head))]
    th = "".join(f"<th{c}>{e(h)}</th>" for h, c in zip(head, cls, strict=True))
    body = "".join(
        "<tr>" + "".join(f"<td{c}>{v}</td>" for v, c in zip(row, cls, strict=True)) + "</tr>"
        for row in rows
    )
    return f'<table class="data"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def page(
    title: str, body: str, *, nav: Sequence[tuple[str, str]] = (), extra: str = "",
    standalone: bool = False,
) -> str:  # fmt: skip
    """A whole HTML document: the top bar (``nav`` is (label, href) pairs), then ``body``.

    ``extra`` is already-escaped markup for the right of the top bar (the logout form);
    ``standalone`` leaves out the (empty) icon link a served page carries.
    """
    icon = "" if standalone else '<link rel="icon" href="data:,">'
    links = "".join(f'<a href="{e(href)}">{e(label)}</a>' for label, href in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="same-origin">{icon}<title>{e(title)} · cascade</title>'
        f"<style>{CSS}</style></head><body>"
        f'<header class="top"><span class="brand">cascade</span>{links}{extra}</header>'
        f"<main>{body}</main></body></html>\n"
    )
