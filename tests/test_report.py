"""The report's totals (from the daily counters), reasons, progress, and the CLI around it."""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from cascade.cli.report import _Progress, add_parser, parse_time
from cascade.events import Attempt, CallRecord, TaskDay, Verdict
from cascade.report import aggregate, build_report, latency_quantile, report_to_dict
from cascade.stores import MemoryStore, store_from_url
from cascade.stores.counters import day_delta, day_of, merge_day

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

DAY0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z
CHEAP, STRONG = 0.0001, 0.001


def make(
    n: int,
    *,
    escalated: bool,
    task: str = "extract",
    sampled: bool = True,
    reason: str = "invalid json",
    validator: str = "schema",
    t: float = DAY0,
) -> CallRecord:
    """A cascade call: the cheap model, then the strong one when ``escalated``."""
    cheap = Attempt("gpt-4o-mini", "answer", "a", (Verdict(validator, not escalated,
                    reason if escalated else ""),), 100, 10, 0, CHEAP, 0.3)  # fmt: skip
    strong = Attempt("gpt-4o", "answer", "b", (Verdict(validator, True),), 100, 12, 0, STRONG, 0.9)
    attempts = (cheap, strong) if escalated else (cheap,)
    return CallRecord(
        id=f"{task}-{n}", time=t + n, task=task, mode="cascade",
        models=tuple(a.model for a in attempts), model=attempts[-1].model,
        escalated=escalated, ok=True, attempts=attempts,
        cost_usd=sum(a.cost_usd or 0 for a in attempts), baseline_cost_usd=STRONG,
        latency_s=1.2 if escalated else 0.3,
        prompt_tokens=sum(a.prompt_tokens for a in attempts),
        completion_tokens=sum(a.completion_tokens for a in attempts),
        features={"prompt_tokens": 100, "language": "en"},
        input=f"user: message {n}\n" if sampled else None, sampled=escalated or sampled,
    )  # fmt: skip


def days_of(records: Iterable[CallRecord]) -> list[TaskDay]:
    """The daily counters a store would keep for these calls."""
    days: dict[tuple[str, str], TaskDay] = {}
    for r in records:
        key = (r.task, day_of(r.time))
        days[key] = merge_day(days.get(key) or TaskDay(*key), day_delta(r))
    return list(days.values())


def workload(task: str = "extract", t: float = DAY0) -> list[CallRecord]:
    """100 calls, 23 escalated by 'confidence' with varying scores, 1 pass in 7 sampled."""
    out = [
        make(i, escalated=True, task=task, t=t, validator="confidence",
             reason=f"confidence 0.{50 + i} < 0.8")
        for i in range(23)
    ]  # fmt: skip
    out += [make(i, escalated=False, task=task, t=t, sampled=i % 7 == 0) for i in range(23, 100)]
    return out


def test_totals_are_exact_from_the_counters() -> None:
    records = workload()
    report = aggregate(records, days_of(records), now=DAY0 + 86_400)
    (t,) = report.tasks
    assert (t.task, t.calls, t.escalations, t.not_ok) == ("extract", 100, 23, 0)
    assert t.escalation_rate == 0.23
    assert t.cost_usd == pytest.approx(23 * (CHEAP + STRONG) + 77 * CHEAP)  # 0.033
    assert t.baseline_cost_usd == pytest.approx(0.1)
    assert t.savings_usd == pytest.approx(0.067)
    assert t.savings_pct == pytest.approx(0.67)
    assert t.prompt_tokens == 23 * 200 + 77 * 100
    assert t.completion_tokens == 23 * 22 + 77 * 10
    assert dict(t.validators) == {"confidence": 23}
    ((day, calls, escalations, cost, baseline),) = t.daily
    assert (day, calls, escalations) == ("2024-05-01", 100, 23)
    assert (cost, baseline) == pytest.approx((0.033, 0.1))
    # 77 calls at 0.3 s (bucket 500 ms), 23 at 1.2 s (bucket 2500 ms)
    assert (t.latency_p50_ms, t.latency_p95_ms) == (500, 2500)
    assert report.overall.calls == 100
    assert report.generated_at == DAY0 + 86_400


def test_reasons_group_by_their_shape_and_keep_an_example() -> None:
    records = workload()
    report = aggregate(records, days_of(records))
    (reason,) = report.tasks[0].top_reasons["confidence"]
    assert reason.reason == "confidence # < #"
    assert reason.calls == 23
    assert reason.example == "confidence 0.50 < 0.8"


def test_overall_sums_every_task_and_tasks_are_sorted() -> None:
    records = workload("b_task") + workload("a_task", t=DAY0 + 86_400)
    report = aggregate(records, days_of(records))
    assert [t.task for t in report.tasks] == ["a_task", "b_task"]
    o = report.overall
    assert (o.task, o.calls, o.escalations, o.escalation_rate) == ("*", 200, 46, 0.23)
    assert [d.day for d in o.daily] == ["2024-05-01", "2024-05-02"]
    assert dict(o.validators) == {"confidence": 46}
    assert o.top_reasons["confidence"][0].calls == 46


def test_a_task_with_counters_but_no_sampled_record_is_reported() -> None:
    records = [make(i, escalated=False, sampled=False) for i in range(10)]
    report = aggregate([], days_of(records))
    (t,) = report.tasks
    assert (t.calls, t.escalations, t.patterns.sampled_records) == (10, 0, 0)


def test_unsampled_records_are_not_analysed() -> None:
    records = [make(i, escalated=False, sampled=False) for i in range(10)]
    report = aggregate(records, days_of(records))
    assert report.tasks[0].patterns.sampled_records == 0


@pytest.mark.parametrize(
    ("histogram", "q", "expected"),
    [
        ({"5": 10, "100": 80, "1000": 5, "inf": 5}, 0.5, 100),
        ({"5": 10, "100": 80, "1000": 5, "inf": 5}, 0.95, 1000),
        ({"5": 10, "100": 80, "1000": 5, "inf": 5}, 0.99, float("inf")),
        ({"10": 1}, 0.5, 10),
        ({"5": 50, "10": 50}, 0.5, 5),  # the quantile falls on the bucket's last call
        ({}, 0.5, None),
    ],
)
def test_latency_quantile_is_the_bound_of_its_bucket(
    histogram: dict[str, int], q: float, expected: float | None
) -> None:
    assert latency_quantile(histogram, q) == expected


def test_no_baseline_means_no_savings_percentage() -> None:
    day = TaskDay("t", "2024-05-01", calls=3, cost_usd=0.01)
    (t,) = aggregate([], [day]).tasks
    assert t.savings_pct is None
    assert t.latency_p50_ms is None


def _progress_of(n: int) -> list[int]:
    seen: list[int] = []
    records = (make(i, escalated=False, sampled=False) for i in range(n))
    aggregate(records, [], progress=seen.append)
    return seen


def test_progress_is_reported_every_ten_thousand_records_and_ends_at_the_total() -> None:
    assert _progress_of(25_000) == [10_000, 20_000, 25_000]
    assert _progress_of(20_000) == [10_000, 20_000]
    assert _progress_of(900) == []  # short reports show no progress


@dataclass
class ListStore:
    """Records and counters in lists, answering the store protocol's read side."""

    saved: list[CallRecord]
    url: str = "list://"
    corrupt_records: int = 0
    asked: list[dict[str, Any]] = field(default_factory=list)

    def records(
        self, *, limit: int | None = None, newest_first: bool = False, **span: Any
    ) -> Iterator[CallRecord]:
        self.asked.append({**span, "limit": limit, "newest_first": newest_first})
        found = sorted(
            (r for r in self.saved if r.sampled and _within(r, **span)),
            key=lambda r: r.time,
            reverse=newest_first,
        )
        return iter(found[:limit])

    def days(self, **span: Any) -> list[TaskDay]:
        return days_of(r for r in self.saved if _within(r, **span))

    def tasks(self) -> list[str]:
        return sorted({r.task for r in self.saved})


def _within(r: CallRecord, task: str | None, since: float | None, until: float | None) -> bool:
    return (
        (task is None or r.task == task)
        and (since is None or r.time >= since)
        and (until is None or r.time <= until)
    )


def test_build_report_passes_the_span_and_counts_corrupt_records() -> None:
    store = ListStore(workload("a") + workload("b"), corrupt_records=2)
    report = build_report(store, task="b", since=DAY0, until=DAY0 + 3600, now=DAY0 + 7200)  # type: ignore[arg-type]
    assert store.asked == [
        {"task": "b", "since": DAY0, "until": DAY0 + 3600, "limit": 5000, "newest_first": True}
    ]
    assert [t.task for t in report.tasks] == ["b"]
    assert (report.since, report.until, report.corrupt_records) == (DAY0, DAY0 + 3600, 2)
    assert report.generated_at == DAY0 + 7200


def test_build_report_reads_at_most_sample_records_per_task_newest_first() -> None:
    saved = workload("a") + workload("b")
    whole = build_report(ListStore(saved), sample=None, now=NOW)  # type: ignore[arg-type]
    store = ListStore(saved)
    capped = build_report(store, sample=3, now=NOW)  # type: ignore[arg-type]
    assert [q["task"] for q in store.asked] == ["a", "b"]
    assert all(q["limit"] == 3 and q["newest_first"] for q in store.asked)
    assert capped.overall.patterns.sampled_records == 6
    assert [t.patterns.sampled_records for t in capped.tasks] == [3, 3]
    assert whole.overall.patterns.sampled_records > 6
    # Totals come from the counters: every call, whatever the sample.
    for field_ in ("calls", "escalations", "not_ok", "cost_usd", "daily", "validators"):
        assert getattr(capped.overall, field_) == getattr(whole.overall, field_)


def test_report_sample_option_reaches_the_store() -> None:
    store = MemoryStore()
    for r in workload("a"):
        store.add(r)
    assert build_report(store, sample=2).overall.patterns.sampled_records == 2
    assert build_report(store, sample=None).overall.patterns.sampled_records == sum(
        r.sampled for r in workload("a")
    )


# --- the command line ------------------------------------------------------------------------

NOW = DAY0 + 10 * 86_400


def report_cli(argv: list[str]) -> int:
    """``cascade report ...`` through the same sub-parser ``cascade.cli`` registers."""
    parser = argparse.ArgumentParser(prog="cascade")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - 1800),
        ("24h", NOW - 86_400),
        ("7d", NOW - 7 * 86_400),
        ("2w", NOW - 14 * 86_400),
        ("1.5h", NOW - 5400),
        ("2024-05-01", DAY0),
        ("2024-05-01T12:00", DAY0 + 43_200),
        ("2024-05-01T12:00:00Z", DAY0 + 43_200),
        ("2024-05-01T14:00+02:00", DAY0 + 43_200),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("bad", ["yesterday", "7x", "2024-13-01", ""])
def test_parse_time_rejects_what_it_cannot_read_naming_it(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
        parse_time(bad, now=NOW)


def test_a_bad_since_is_an_argparse_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        report_cli(["report", "--since", "lastweek"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--since" in err
    assert "'lastweek'" in err


def _sqlite_with(tmp_path: Path, records: Iterable[CallRecord]) -> str:
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    store = store_from_url(url, queue_size=1_000_000)  # all in the file, none spooled
    for r in records:
        store.add(r)
    store.close()
    return url


def test_cli_writes_the_report_to_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _sqlite_with(tmp_path, workload(t=NOW - 3600))
    out = tmp_path / "report.json"
    code = report_cli(["report", "--store", url, "--format", "json", "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert (data["overall"]["calls"], data["overall"]["escalations"]) == (100, 23)
    assert capsys.readouterr().out == ""


def test_cli_shows_progress_on_stderr_for_long_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    many = [make(i, escalated=True, t=time.time() - 7200) for i in range(10_001)]
    url = _sqlite_with(tmp_path, many)
    argv = ["report", "--store", url, "--since", "1d", "--format", "json"]
    assert report_cli([*argv, "--sample", "0"]) == 0  # not a terminal: no per-batch line
    assert "\r" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert report_cli([*argv, "--sample", "0"]) == 0  # 0: every stored record
    out, err = capsys.readouterr()
    assert "\rreading records: 10,000\rreading records: 10,001\n" in err  # the last: all read
    assert report_cli([*argv, "--sample", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["patterns"]["sampled_records"] == 20
    assert err.endswith("\n")
    assert json.loads(out)["overall"]["calls"] == 10_001


def test_progress_off_a_terminal_ends_with_the_number_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = [0.0]
    progress = _Progress(clock=lambda: now[0])  # stderr is not a terminal here
    for n, t in [(10_000, 6.0), (20_000, 7.0), (25_000, 8.0)]:
        now[0] = t
        progress(n)
    progress.done()
    assert capsys.readouterr().err == "reading records: 10,000\nreading records: 25,000\n"
    quiet = _Progress(clock=lambda: 0.0)  # done before the first line was due: none
    quiet(10_000)
    quiet.done()
    assert capsys.readouterr().err == ""


def test_the_report_command_leaves_the_cyclic_collector_as_it_found_it(tmp_path: Path) -> None:
    url = _sqlite_with(tmp_path, workload())
    assert gc.isenabled()
    assert report_cli(["report", "--store", url, "--out", str(tmp_path / "r.txt")]) == 0
    assert gc.isenabled()
    gc.disable()
    try:
        assert report_cli(["report", "--store", url, "--out", str(tmp_path / "r.txt")]) == 0
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_cli_reads_the_store_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _sqlite_with(tmp_path, workload(t=NOW - 3600))
    monkeypatch.setenv("CASCADE_STORE", url)
    assert report_cli(["report", "--format", "csv", "--task", "extract"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("task,day,calls,escalations")
    assert lines[1].split(",")[2:4] == ["100", "23"]


def test_cli_defaults_to_the_embedded_store(capsys: pytest.CaptureFixture[str]) -> None:
    # CASCADE_HOME points at an empty directory (conftest): an empty report, not an error
    assert report_cli(["report"]) == 0
    assert "no calls recorded" in capsys.readouterr().out


def test_cli_store_error_exits_2_with_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = report_cli(["report", "--store", f"sqlite:///{blocker}/sub/records.sqlite3"])
    assert code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_unknown_scheme_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_cli(["report", "--store", "nosuch://host"]) == 2
    assert "unknown store scheme" in capsys.readouterr().err


def test_the_hourly_series_splits_the_daily_one_and_is_in_the_json(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path}/hours.sqlite3")
    calls = [make(i, escalated=i % 4 == 0, t=DAY0 + 3600 * (i % 5 - 1) + 100) for i in range(40)]
    calls += [make(i, escalated=False, task="other", t=DAY0 + 86_400 + 7200) for i in range(3)]
    for r in calls:
        store.add(r)
    store.flush()
    data = report_to_dict(build_report(store, now=NOW))
    for t in [*data["tasks"], data["overall"]]:
        assert t["hourly"], t["task"]
        for d in t["daily"]:
            mine = [h for h in t["hourly"] if h["hour"].startswith(d["day"] + "T")]
            assert sum(h["calls"] for h in mine) == d["calls"]
            assert sum(h["escalations"] for h in mine) == d["escalations"]
            assert sum(h["cost_usd"] for h in mine) == pytest.approx(d["cost_usd"])
    extract = data["tasks"][0]
    # i % 5 == 0 is in the last hour of the day before.
    assert [(h["hour"], h["calls"]) for h in extract["hourly"]] == [
        ("2024-04-30T23", 8), ("2024-05-01T00", 8), ("2024-05-01T01", 8), ("2024-05-01T02", 8),
        ("2024-05-01T03", 8),
    ]  # fmt: skip
    # A span that cuts into a day reads the hours of the whole day, as the days are read.
    cut = report_to_dict(build_report(store, task="extract", since=DAY0 + 7200, now=NOW))
    assert cut["overall"]["hourly"][0]["hour"] == "2024-05-01T00"
    assert sum(h["calls"] for h in cut["overall"]["hourly"]) == cut["overall"]["calls"] == 32
    store.close()


def test_the_hourly_series_is_unknown_where_hours_were_not_kept(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path}/hours.sqlite3")
    for r in [make(i, escalated=False, t=DAY0 + 86_400 * (i % 2)) for i in range(6)]:
        store.add(r)
    store.flush()
    assert build_report(store, now=NOW).overall.hourly is not None
    with sqlite3.connect(tmp_path / "hours.sqlite3") as db:  # as a file from before the hours
        db.execute("DELETE FROM hours WHERE hour LIKE '2024-05-01T%'")
    report = build_report(store, now=NOW)
    assert report.overall.hourly is None
    assert report_to_dict(report)["tasks"][0]["hourly"] is None
    assert build_report(store, since=DAY0 + 86_400, now=NOW).overall.hourly is not None
    store.close()
    # A store without hourly counters (the protocol's optional part): unknown, not zero.
    assert build_report(ListStore(workload()), now=NOW).overall.hourly is None  # type: ignore[arg-type]


def test_the_hourly_series_is_left_out_of_spans_over_a_month() -> None:
    store = MemoryStore()
    for day in (0, 31):
        store.add(make(day, escalated=False, t=DAY0 + day * 86_400))
    assert build_report(store, now=NOW).overall.hourly is None
    assert build_report(store, until=DAY0 + 30 * 86_400, now=NOW).overall.hourly is not None
