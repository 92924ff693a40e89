"""The charts over time of a task (or of all tasks): spend, savings, escalation, calls, per
UTC day or per UTC hour, from the report's ``daily`` and ``hourly`` rows.

The counters are kept per UTC day (and per hour), so a report over ``since``/``until``
counts the whole days those touch; the hourly rows split the same days, hours without calls
drawn as zero, so an hourly chart adds up to the same totals as the daily one and the cards.
``by``: ``day``, ``hour`` or ``auto`` (hourly when the period is at most ``AUTO_HOURLY_S``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .charts import BLUE, GREEN, GREY, RED, Series, time_chart
from .layout import e, money, pct, rate

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["AUTO_HOURLY_S", "GRANULARITIES", "granularity", "trend_html"]

AUTO_HOURLY_S = 3 * 86_400
GRANULARITIES = ("auto", "day", "hour")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _when(iso: str | None) -> datetime | None:
    return None if iso is None else datetime.fromisoformat(iso.replace("Z", "+00:00"))


def granularity(report: Mapping[str, Any], t: Mapping[str, Any], by: str = "auto") -> str:
    """``hour`` or ``day``: what ``by`` asks for, ``auto`` being ``hour`` for a period of at
    most three days; ``day`` whenever the report has no hourly rows (unknown)."""
    if by not in GRANULARITIES:
        raise ValueError(f"by={by!r}: expected one of {', '.join(GRANULARITIES)}")
    if t.get("hourly") is None or by == "day":
        return "day"
    if by == "hour":
        return "hour"
    end = _when(report.get("until")) or _when(report["generated_at"])
    start = _when(report.get("since"))
    if start is None:
        if not t["daily"]:
            return "hour"
        start = datetime.fromisoformat(t["daily"][0]["day"]).replace(tzinfo=UTC)
    assert end is not None
    return "hour" if (end - start).total_seconds() <= AUTO_HOURLY_S else "day"


def _short_day(label: str) -> str:
    """``2024-05-01`` as ``May 1`` on an axis (the hover has the whole date)."""
    try:
        return f"{_MONTHS[int(label[5:7]) - 1]} {int(label[8:10])}"
    except (ValueError, IndexError):
        return label


def _short_hour(label: str) -> str:
    """``2024-05-01 13:00`` as ``13:00``, and midnight as the day (``May 1``)."""
    return _short_day(label[:10]) if label.endswith(" 00:00") else label[11:]


def _short_day_hour(label: str) -> str:
    """``2024-05-01 13:00`` as ``May 1 13h``: over more than a day an hour needs its day."""
    return _short_day(label[:10]) + ("" if label.endswith(" 00:00") else f" {label[11:13]}h")


def _hours(report: Mapping[str, Any], t: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every hour of the report's whole days up to its generation, zero where no call was."""
    rows = {h["hour"]: h for h in t["hourly"]}
    if not t["daily"]:
        return []
    hour = datetime.fromisoformat(t["daily"][0]["day"]).replace(tzinfo=UTC)
    last_day = datetime.fromisoformat(t["daily"][-1]["day"]).replace(tzinfo=UTC)
    generated = _when(report["generated_at"])
    assert generated is not None
    end = min(last_day + timedelta(hours=23), generated.replace(minute=0, second=0))
    if rows:  # never cut off an hour with calls (a clock behind the writers' clocks)
        end = max(end, datetime.fromisoformat(max(rows) + ":00").replace(tzinfo=UTC))
    out = []
    while hour <= end:
        key = hour.strftime("%Y-%m-%dT%H")
        zero = {"calls": 0, "escalations": 0, "cost_usd": 0.0, "baseline_cost_usd": 0.0}
        out.append({**zero, **rows.get(key, {}), "label": hour.strftime("%Y-%m-%d %H:00")})
        hour += timedelta(hours=1)
    return out


def trend_html(report: Mapping[str, Any], t: Mapping[str, Any], by: str = "auto") -> str:
    """The four charts of ``t`` over time, per day or per hour (see ``granularity``)."""
    unit = granularity(report, t, by)
    note = ""
    if unit == "hour":
        rows: Sequence[Mapping[str, Any]] = _hours(report, t)
        labels = [r["label"] for r in rows]
        short = _short_hour if len(rows) <= 24 else _short_day_hour
    else:
        rows = t["daily"]
        labels = [r["day"] for r in rows]
        short = _short_day
        if by == "hour":
            note = (
                '<p class="sub" data-field="hourly_unknown">Per hour is unknown for this '
                "span: the store keeps no hourly counters for some of its days (Redis keeps "
                "them 14 days; stores written before hourly counters have none for those "
                "days; spans over 31 days have none). Shown per day.</p>"
            )
    return note + _charts(rows, labels, unit, short)


def _charts(rows: Sequence[Mapping[str, Any]], labels: list[str], unit: str, short: Any) -> str:
    line = "line" if len(rows) > 1 else "bar"
    spend = time_chart(
        labels,
        [Series("with the cascade", BLUE, [d["cost_usd"] for d in rows]),
         Series("all-strong baseline", GREY, [d["baseline_cost_usd"] for d in rows])],
        fmt=money, title=f"Spend per {unit} (USD)", short=short,
        hover=lambda i: f"cascade {money(rows[i]['cost_usd'])}, all-strong "
        f"{money(rows[i]['baseline_cost_usd'])}, saved "
        f"{money(rows[i]['baseline_cost_usd'] - rows[i]['cost_usd'])}",
    )  # fmt: skip
    rates = [d["escalations"] / d["calls"] if d["calls"] else None for d in rows]
    escalation = time_chart(
        labels, [Series("escalation rate", RED, rates)], fmt=lambda v: pct(v, 0),
        title=f"Escalation rate per {unit} (% of calls)", kind=line, short=short,
        hover=lambda i: rate(rows[i]["escalations"], rows[i]["calls"]),
    )  # fmt: skip
    calls = time_chart(
        labels, [Series("calls", BLUE, [d["calls"] for d in rows])], fmt=lambda v: f"{v:,.0f}",
        title=f"Calls per {unit}", hover=lambda i: f"{rows[i]['calls']:,} calls", short=short,
    )  # fmt: skip
    saved = [
        (d["baseline_cost_usd"] - d["cost_usd"]) / d["baseline_cost_usd"]
        if d["baseline_cost_usd"] else None
        for d in rows
    ]  # fmt: skip
    savings = time_chart(
        labels, [Series("saved", GREEN, saved)], fmt=lambda v: pct(v, 0),
        title=f"Saved per {unit} (% of the all-strong baseline)", kind=line, short=short,
        hover=lambda i: f"saved {money(rows[i]['baseline_cost_usd'] - rows[i]['cost_usd'])} of "
        f"{money(rows[i]['baseline_cost_usd'])} = {pct(saved[i])}",
    )  # fmt: skip
    panels = "".join(f'<div class="panel">{c}</div>' for c in (spend, savings, escalation, calls))
    return f'<div class="grid2" data-granularity="{e(unit)}">{panels}</div>'
