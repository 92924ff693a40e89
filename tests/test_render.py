"""The renderers: an 80-column table, a stable JSON schema, CSV rows, self-contained HTML."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from cascade.events import Attempt, CallRecord, TaskDay, Verdict
from cascade.report import Report, aggregate
from cascade.report.render import CSV_COLUMNS, render
from cascade.stores.counters import day_delta, day_of, merge_day

if TYPE_CHECKING:
    from collections.abc import Iterable

DAY0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z
EVIL = "<script>alert('x')</script>"
LONG_REASON = "schema mismatch at " + "/items/0/properties/" * 12 + "name: expected string"


def call(n: int, task: str, escalated: bool, day: int = 0, text: str = "") -> CallRecord:
    verdict = Verdict("json_schema", not escalated, LONG_REASON if escalated else "")
    cheap = Attempt("gpt-4o-mini", "answer", "a", (verdict,), 3000, 10, 0, 0.0004, 0.3)
    strong = Attempt("gpt-4o", "answer", "b", (), 3000, 10, 0, 0.004, 0.9)
    attempts = (cheap, strong) if escalated else (cheap,)
    return CallRecord(
        id=f"{task}{n}", time=DAY0 + day * 86_400 + n, task=task, mode="cascade",
        models=tuple(a.model for a in attempts), model=attempts[-1].model,
        escalated=escalated, ok=True, attempts=attempts,
        cost_usd=sum(a.cost_usd or 0 for a in attempts), baseline_cost_usd=0.004,
        latency_s=1.2 if escalated else 0.3, prompt_tokens=3000, completion_tokens=10,
        features={"prompt_tokens": 3000, "language": "en"},
        input=text or f"user: {EVIL} please refund order {n % 5} now {n}\n", sampled=True,
    )  # fmt: skip


def days_of(records: Iterable[CallRecord]) -> list[TaskDay]:
    days: dict[tuple[str, str], TaskDay] = {}
    for r in records:
        key = (r.task, day_of(r.time))
        days[key] = merge_day(days.get(key) or TaskDay(*key), day_delta(r))
    return list(days.values())


@pytest.fixture(scope="module")
def report() -> Report:
    records = [
        call(n, task, escalated=n % 10 < esc, day=day)
        for task, esc in (("extract", 9), (EVIL, 2), ("a_" + "very_long_task_name" * 6, 5))
        for day in (0, 1)
        for n in range(40)
    ]
    return aggregate(records, days_of(records), since=DAY0, until=DAY0 + 2 * 86_400, now=DAY0)


def test_table_lines_fit_in_80_columns(report: Report) -> None:
    text = render(report, "table")
    widths = [len(line) for line in text.splitlines()]
    assert max(widths) <= 80, [line for line in text.splitlines() if len(line) > 80]
    assert LONG_REASON[:30] in text  # wrapped, not dropped


def test_table_shows_the_figures(report: Report) -> None:
    text = render(report, "table")
    assert "cascade report: 2024-05-01T00:00:00Z to 2024-05-03T00:00:00Z" in text
    extract = text[text.index("task extract") :]
    assert "calls 80   escalations 72 (90.0%)" in extract
    # cost 72 * 0.0044 + 8 * 0.0004 = 0.32 against 80 * 0.004 = 0.32
    assert "cost $0.3200 vs $0.3200 with the strong model alone" in extract
    assert "latency p50 \u22642,500 ms, p95 \u22642,500 ms" in extract
    assert re.search(r"json_schema +72 calls\n", extract)
    single = replace(report.tasks[0], validators={"json_schema": 1})
    assert re.search(r"json_schema +1 call\n", render(replace(report, tasks=(single,)), "table"))
    assert "all tasks" in text
    assert "suggestions:" in text


def test_json_has_the_documented_stable_schema(report: Report) -> None:
    data = json.loads(render(report, "json"))
    assert data["schema_version"] == 2
    assert set(data) == {
        "schema_version", "generated_at", "since", "until", "corrupt_records", "tasks", "overall",
    }  # fmt: skip
    assert data["since"] == "2024-05-01T00:00:00Z"
    task_keys = {
        "task", "calls", "escalations", "escalation_rate", "not_ok", "cost_usd",
        "baseline_cost_usd", "savings_usd", "savings_pct", "latency_p50_ms", "latency_p95_ms",
        "prompt_tokens", "completion_tokens", "validators", "top_reasons", "daily", "hourly",
        "patterns", "uncosted_calls",
    }  # fmt: skip
    for t in [*data["tasks"], data["overall"]]:
        assert set(t) == task_keys
    assert set(data["overall"]["patterns"]) == {
        "sampled_records", "pass_sampling_rate", "size_buckets", "features", "terms",
        "terms_by_validator", "reasons", "duplicates", "suggestions", "tested", "window_rate",
    }  # fmt: skip
    extract = next(t for t in data["tasks"] if t["task"] == "extract")
    assert (extract["calls"], extract["escalations"]) == (80, 72)
    assert extract["escalation_rate"] == 0.9
    assert extract["validators"] == {"json_schema": 72}
    assert extract["daily"][0] == {
        "day": "2024-05-01", "calls": 40, "escalations": 36,
        "cost_usd": pytest.approx(0.16), "baseline_cost_usd": pytest.approx(0.16),
    }  # fmt: skip
    assert set(extract["patterns"]["suggestions"][0]) == {
        "kind", "message", "projected_savings_usd_per_1k_calls", "evidence",
    }  # fmt: skip
    assert data["overall"]["task"] == "*"
    assert data["overall"]["calls"] == 240


def test_json_writes_no_infinity() -> None:
    day = TaskDay("t", "2024-05-01", calls=1, latency_ms={"inf": 1})
    data = json.loads(render(aggregate([], [day]), "json"), parse_constant=pytest.fail)
    assert data["tasks"][0]["latency_p95_ms"] is None


def test_csv_has_one_row_per_task_per_day(report: Report) -> None:
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 3 * 2
    extract = [r for r in rows if r["task"] == "extract"]
    assert [r["day"] for r in extract] == ["2024-05-01", "2024-05-02"]
    assert extract[0] == {
        "task": "extract", "day": "2024-05-01", "calls": "40", "escalations": "36",
        "escalation_rate": "0.9000", "cost_usd": "0.160000", "baseline_cost_usd": "0.160000",
        "savings_pct": "0.0000",
    }  # fmt: skip
    assert any(r["task"] == EVIL for r in rows)  # the csv module quotes; the value is intact


def test_html_is_self_contained(report: Report) -> None:
    page = render(report, "html")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    # Links only to its own sections: nothing is fetched.
    assert not re.search(r"""src\s*=|href\s*=\s*"[^#]|@import|url\(|<link""", page, re.I)
    assert "http://" not in page
    assert "https://" not in page
    assert page.count("<svg") >= 4
    assert "escalation rate by input size" in page.lower()


def test_html_escapes_every_user_string(report: Report) -> None:
    page = render(report, "html")
    assert EVIL not in page
    assert "Task <code>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</code>" in page


def test_an_empty_report_renders_in_every_format() -> None:
    empty = aggregate([], [], now=DAY0)
    assert "no calls recorded" in render(empty, "table")
    assert json.loads(render(empty, "json"))["tasks"] == []
    assert render(empty, "csv") == ",".join(CSV_COLUMNS) + "\n"
    assert "No calls recorded" in render(empty, "html")


def test_an_unknown_format_is_refused(report: Report) -> None:
    with pytest.raises(ValueError, match="unknown report format 'xml'"):
        render(report, "xml")  # type: ignore[arg-type]


def test_a_model_without_a_price_shows_unknown_cost_not_zero() -> None:
    day = TaskDay("t", "2024-05-01", calls=3, uncosted=1, cost_usd=0.002, baseline_cost_usd=0.01)
    report = aggregate([], [day])
    text = render(report, "table")
    assert "cost unknown, savings unknown: 1 call used a model without a known price" in text
    assert "$0.0" not in text and "saved" not in text
    data = json.loads(render(report, "json"))["tasks"][0]
    assert (data["cost_usd"], data["savings_usd"], data["savings_pct"]) == (None, None, None)
    assert data["uncosted_calls"] == 1


def test_money_never_rounds_a_cost_to_zero_and_latencies_say_they_are_bounds() -> None:
    from cascade.report.render._format import money, ms

    assert money(0.00006805) == "$0.000068"
    assert money(-0.00000055) == "-$0.00000055"  # not "$-0.0000"
    assert (money(0.0075), money(123.456), money(0.0)) == ("$0.0075", "$123.46", "$0.0000")
    assert (ms(250.0), ms(float("inf")), ms(None)) == ("\u2264250 ms", ">60,000 ms", "-")


def test_html_states_each_terms_own_confidence_level() -> None:
    """A term's interval is at the level its selection needs (above 95%): the page says so."""
    from test_patterns import planted

    records = planted()
    page = render(aggregate(records, days_of(records)), "html")
    term = aggregate(records, days_of(records)).tasks[0].patterns.terms[0]
    row = page[page.index(f"<code>{term.term}</code>") :]
    row = row[: row.index("</tr>")]
    assert term.confidence > 0.95
    assert f"({term.confidence * 100:.4g}% CI " in row
    assert "95% CI" not in row
