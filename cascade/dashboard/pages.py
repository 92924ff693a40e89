"""The Overview and Task pages, drawn from the report's JSON (``report_to_dict``).

They read nothing but that dict, so every figure on a page is a figure of
``cascade report --format json`` over the same store, span and sample. The dashboard and the
static ``cascade report --format html`` both render through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..recording import language_label
from .charts import RED, bar_rows
from .layout import UNKNOWN, card, e, interval, money, ms, number, page, pct, rate, table
from .trend import trend_html

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["overview_html", "snapshot_html", "span_text", "task_html"]

Dict = dict[str, Any]


def span_text(report: Mapping[str, Any]) -> str:
    """``2024-05-01T00:00:00Z to now`` for the report's span."""
    return f"{report.get('since') or 'the first call'} to {report.get('until') or 'now'}"


def _figures(t: Mapping[str, Any]) -> str:
    saved_pct = t["savings_pct"]
    saving_note = "unknown: no baseline cost" if saved_pct is None else "baseline minus spend"
    return '<div class="cards">' + "".join((
        card("Spend with the cascade", money(t["cost_usd"]), field="cost_usd", raw=t["cost_usd"]),
        card("All-strong baseline", money(t["baseline_cost_usd"]), "every call on the strong model",
             field="baseline_cost_usd", raw=t["baseline_cost_usd"]),
        card("Saved", money(t["savings_usd"]), saving_note, field="savings_usd",
             raw=t["savings_usd"]),
        card("Saved, percent", pct(saved_pct), "of the baseline", field="savings_pct",
             raw="null" if saved_pct is None else saved_pct),
        card("Calls", number(t["calls"]), "every call, from the counters", field="calls",
             raw=t["calls"]),
        card("Escalation rate", pct(t["escalation_rate"]) if t["calls"] else UNKNOWN,
             f"{t['escalations']:,} of {t['calls']:,} calls", field="escalation_rate",
             raw=t["escalation_rate"]),
        card("Not ok", number(t["not_ok"]), "failed validation or errored", field="not_ok",
             raw=t["not_ok"]),
        card("Latency p50 / p95", f"{ms(t['latency_p50_ms'])} / {ms(t['latency_p95_ms'])}",
             "at most: upper bounds of histogram buckets"),
    )) + "</div>"  # fmt: skip


def overview_html(
    report: Mapping[str, Any], *, task_href: Callable[[str], str], by: str = "auto"
) -> str:
    """The Overview body: every task together, its days (or hours: ``by``, see ``trend``),
    and one row per task."""
    t = report["overall"]
    rows = [
        [
            f'<a href="{e(task_href(x["task"]))}">{e(x["task"])}</a>',
            number(x["calls"]),
            e(rate(x["escalations"], x["calls"])),
            e(money(x["cost_usd"])),
            e(money(x["baseline_cost_usd"])),
            e(money(x["savings_usd"])),
            e(pct(x["savings_pct"])),
        ]
        for x in report["tasks"]
    ]
    if not report["tasks"]:
        rows_html = '<p class="empty">No calls recorded in this span.</p>'
    else:
        rows_html = table(["task", "calls", "escalated", "spend", "all-strong", "saved",
                           "saved %"], rows, numeric=(1, 2, 3, 4, 5, 6))  # fmt: skip
    corrupt = report.get("corrupt_records") or 0
    warn = f'<p class="bad">{corrupt:,} unreadable stored records were skipped.</p>' if corrupt \
        else ""  # fmt: skip
    return (
        f'<h1>Overview</h1><p class="sub">All tasks, {e(span_text(report))}; generated '
        f"{e(report['generated_at'])}.{_whole_days(report, t)}</p>{warn}{_figures(t)}"
        f"{trend_html(report, t, by)}"
        f"<h2>Tasks</h2>{rows_html}"
    )


def _whole_days(report: Mapping[str, Any], t: Mapping[str, Any]) -> str:
    """A note when the span cuts into a day: the counters count whole UTC days."""
    cut = [w for w in (report.get("since"), report.get("until")) if w and "T00:00:00" not in w]
    if not cut or not t["daily"]:
        return ""
    first, last = t["daily"][0]["day"], t["daily"][-1]["day"]
    days = first if first == last else f"{first} to {last}"
    return f" The counters are kept per UTC day, so these figures count whole days: {e(days)}."


def _failures(t: Mapping[str, Any]) -> str:
    calls = t["calls"]
    rows = [(v, float(n), f"{n:,} of {calls:,} calls", rate(n, calls))
            for v, n in t["validators"].items()]  # fmt: skip
    chart = bar_rows(rows[:12], title="Calls with a failed check, by validator", color=RED)
    reasons = [
        [e(v), number(r["calls"]), f"<code>{e(r['reason'])}</code>",
         f"<code>{e(r['example'])}</code>"]
        for v, rs in t["top_reasons"].items() for r in rs[:5]
    ]  # fmt: skip
    return (
        f'<div class="panel">{chart}<h3>Top reasons (from the sampled records)</h3>'
        + table(["validator", "calls", "reason", "example"], reasons, numeric=(1,))
        + "</div>"
    )


def _ci(x: Mapping[str, Any]) -> str:
    return interval(x.get("rate"), x.get("rate_low"), x.get("rate_high"), x.get("confidence", 0.95))


def _sizes(p: Mapping[str, Any]) -> str:
    buckets = p["size_buckets"]
    rows = [
        (b["label"], b["rate"], pct(b["rate"]),
         f"{_ci(b)}: {b['escalations']:,} escalated of {number(b['calls'])} calls")
        for b in buckets
    ]  # fmt: skip
    bounds = [
        (b["rate_low"], b["rate_high"]) if b.get("rate_low") is not None else None for b in buckets
    ]
    chart = bar_rows(
        rows, title="Escalation rate by input size (prompt tokens)", top=1.0, intervals=bounds
    )
    return (
        f'<div class="panel">{chart}<p class="sub">Estimated from {p["sampled_records"]:,} '
        "stored records, each counting as 1 / its inclusion probability (pass sampling rate "
        f"{_rate_or_unknown(p['pass_sampling_rate'])}); whiskers are exact 95% intervals, "
        "call counts marked \u2248 are estimates.</p></div>"
    )


def _rate_or_unknown(value: float | None) -> str:
    return "unknown: no passing call was sampled" if value is None else pct(value, 2)


def _members(members: list[str], shown: int = 4) -> str:
    """A merged term's first members, and how many more were found in the same inputs."""
    codes = " ".join(f"<code>{e(m)}</code>" for m in members[:shown])
    more = len(members) - shown
    return codes + (f' <span class="sub">and {more:,} more in the same inputs</span>' if more > 0
                    else "")  # fmt: skip


def _value(f: Mapping[str, Any]) -> str:
    return language_label(str(f["value"])) if f["feature"] == "language" else str(f["value"])


def _patterns(p: Mapping[str, Any]) -> str:
    parts = []
    if p["features"]:
        parts.append("<h3>Escalation rate by input feature</h3>" + table(
            ["feature", "value", "escalated", "rate"],
            [[e(f["feature"]), e(_value(f)), e(f"{f['escalations']:,} of {number(f['calls'])}"),
              e(_ci(f))] for f in p["features"]], numeric=(2, 3)))  # fmt: skip
    if p["terms"]:
        parts.append("<h3>Words that escalate more than the other inputs</h3>" + table(
            ["term", "inputs holding it", "escalated", "escalation rate", "the others", "q"],
            [[_members(x.get("members") or [x["term"]]),
              number(x.get("inputs")), number(x["escalated"]), e(_ci(x)),
              e(pct(x.get("others_rate"))),
              UNKNOWN if x.get("q_value") is None else f"{x['q_value']:.2g}"]
             for x in p["terms"]], numeric=(1, 2, 3, 4, 5)))  # fmt: skip
    if p["duplicates"]:
        parts.append("<h3>Near-duplicate escalated inputs</h3>" + table(
            ["inputs", "example"],
            [[number(d["size"]), f"<code>{e(d['example'])}</code>"] for d in p["duplicates"]],
            numeric=(0,)))  # fmt: skip
    suggestions = "".join(
        f"<li>{e(s['message'])}"
        + (f" <span class=\"tag\">projected {e(money(s['projected_savings_usd_per_1k_calls']))}"
           " per 1k calls</span>" if s["projected_savings_usd_per_1k_calls"] is not None else "")
        + "</li>"
        for s in p["suggestions"]
    )  # fmt: skip
    parts.append(
        "<h3>Suggestions</h3>"
        + (
            f"<ul>{suggestions}</ul>"
            if suggestions
            else '<p class="empty">No pattern has enough evidence for a suggestion.</p>'
        )
    )
    return '<div class="panel"><h2>Patterns</h2>' + "".join(parts) + "</div>"


def _observation(o: Mapping[str, Any], task: str) -> str:
    ci = o["agreement_ci95"]
    agreement = UNKNOWN if o["agreement"] is None else (
        f"{pct(o['agreement'])} ({o['agreed']:,} of {o['compared']:,}; 95% CI "
        f"{pct(ci[0])}\u2013{pct(ci[1])})" if ci else pct(o["agreement"]))  # fmt: skip
    cls = {"switch": "good", "do_not_switch": "bad"}.get(o["action"], "")
    reasons = ""
    if o["top_reasons"]:
        reasons = "<h3>Would escalate because</h3>" + table(
            ["calls", "reason", "example"],
            [[number(r["calls"]), f"<code>{e(r['reason'])}</code>",
              f"<code>{e(r['example'])}</code>"] for r in o["top_reasons"]],
            numeric=(0,))  # fmt: skip
    cards = "".join((
        card("Observed calls", number(o["calls"])),
        card("Would escalate", rate(o["escalations"], o["calls"])),
        card("Strong model cost", money(o["strong_cost_usd"])),
        card("Projected cascade cost", money(o["projected_cost_usd"])),
        card("Projected savings", money(o["savings_usd"]), pct(o["savings_pct"])),
        card("Agreement", agreement, "would-be-accepted cheap answers vs the strong ones"),
    ))  # fmt: skip
    return (
        f'<div class="panel"><h2>Observation</h2><p class="verdict {cls}" '
        f'data-field="observation.recommendation">{e(o["recommendation"])}</p>'
        f'<div class="cards">{cards}</div>{reasons}<h3>Calibration</h3>'
        f"<p>{o['compared']:,} observed "
        "answers were compared with the strong model's; calibrate a threshold from them with "
        f"<code>cascade calibrate --task {e(task)} --from-store</code>.</p></div>"
    )


def task_html(
    report: Mapping[str, Any], t: Mapping[str, Any], *, calls_href: str | None = None,
    pending: int | None = None, by: str = "auto",
) -> str:  # fmt: skip
    """The Task body: its figures and days (or hours: ``by``), failures, sizes, patterns,
    observation.

    ``pending``: the patterns (from that many stored records) are still being built; the
    report holds the counters only and the page says so.
    """
    if pending is not None:
        return _task_counters(report, t, calls_href, pending, by)
    link = f' <a href="{e(calls_href)}">Browse its calls \u2192</a>' if calls_href else ""
    observation = _observation(t["observation"], t["task"]) if t.get("observation") else ""
    return (
        f'<h1>Task <code>{e(t["task"])}</code></h1><p class="sub">{e(span_text(report))}; '
        f"generated {e(report['generated_at'])}.{_whole_days(report, t)}{link}</p>{_figures(t)}"
        f"{observation}{trend_html(report, t, by)}"
        f'<div class="grid2">{_failures(t)}{_sizes(t["patterns"])}</div>{_patterns(t["patterns"])}'
    )


def _task_counters(
    report: Mapping[str, Any], t: Mapping[str, Any], calls_href: str | None, pending: int,
    by: str,
) -> str:  # fmt: skip
    link = f' <a href="{e(calls_href)}">Browse its calls \u2192</a>' if calls_href else ""
    failures = bar_rows(
        [(v, float(n), f"{n:,} of {t['calls']:,} calls", rate(n, t["calls"]))
         for v, n in t["validators"].items()][:12],
        title="Calls with a failed check, by validator", color=RED,
    )  # fmt: skip
    return (
        f'<h1>Task <code>{e(t["task"])}</code></h1><p class="sub">{e(span_text(report))}; '
        f"generated {e(report['generated_at'])}.{_whole_days(report, t)}{link}</p>{_figures(t)}"
        f'<p class="panel" data-field="pending">Reasons, input sizes, patterns and the '
        f"observation are being computed from the newest {pending:,} stored records of this "
        "task; reload in a few seconds. The figures above count every call.</p>"
        f'{trend_html(report, t, by)}<div class="grid2"><div class="panel">{failures}</div></div>'
    )


def snapshot_html(report: Mapping[str, Any]) -> str:
    """The Overview and every Task page in one static document (``report --format html``)."""
    ids = {t["task"]: f"task-{i}" for i, t in enumerate(report["tasks"], 1)}
    sections = [overview_html(report, task_href=lambda name: "#" + ids[name])]
    sections += [
        f'<section id="{ids[t["task"]]}">{task_html(report, t)}</section>' for t in report["tasks"]
    ]
    nav = [("Overview", "#overview")] + [(t["task"], "#" + ids[t["task"]]) for t in report["tasks"]]
    body = f'<section id="overview">{sections[0]}</section>' + "".join(sections[1:])
    return page("cascade report", body, nav=nav, standalone=True)
