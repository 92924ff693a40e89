"""The Calls page: a task's stored records, newest first, filtered, each opening to its attempts.

Filtering reads the store's records newest first (``Store.records(limit=...,
newest_first=True)``) and keeps those that match, reading at most ``scan`` records per page,
so a page costs the same over a store of a thousand calls or a million; when the scan ends
before the page is full, the page says how many records it read and offers the next ones.
Everything shown from a record (inputs, outputs, reasons, names) is escaped: it is whatever
the callers of the model sent and the models answered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .layout import UNKNOWN, e, money, number, table

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..events import Attempt, CallRecord
    from ..stores import Store

__all__ = ["CallFilter", "CallPage", "calls_html", "find_calls", "iso_time"]

PAGE = 50
SCAN = 1000


@dataclass(frozen=True, slots=True)
class CallFilter:
    """Which records of a task to show: None is 'any'."""

    task: str
    escalated: bool | None = None
    ok: bool | None = None
    validator: str | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, r: CallRecord) -> bool:
        """True when the record passes every filter that is set."""
        if self.escalated is not None and r.escalated != self.escalated:
            return False
        if self.ok is not None and r.ok != self.ok:
            return False
        if self.model is not None and self.model not in r.models and r.model != self.model:
            return False
        if self.validator is not None:
            return any(
                v.validator == self.validator and not v.passed
                for a in r.attempts
                for v in a.verdicts
            )
        return True


@dataclass(frozen=True, slots=True)
class CallPage:
    """One page of matching records, how many were read for it, and where the next starts.

    ``next_before`` is the (time, id) to continue from (None: no older stored record);
    ``scanned`` counts the records read, matching or not.
    """

    records: tuple[CallRecord, ...]
    scanned: int
    next_before: tuple[float, str] | None


def find_calls(
    store: Store,
    where: CallFilter,
    *,
    before: tuple[float, str] | None = None,
    page: int = PAGE,
    scan: int = SCAN,
) -> CallPage:
    """The newest ``page`` records matching ``where`` older than ``before``, reading at most
    ``scan`` records. Raises ``StoreError`` when the store cannot be read.

    It first reads twice the page (enough when most records match), and only when that does
    not fill the page reads ``scan`` records from the same start: two reads at most, each
    from ``before`` (a read continuing from its own last record would make a store whose
    order is not the records' time, like Redis, decode the records above it again).
    """
    until = where.until
    if before is not None:
        until = before[0] if until is None else min(until, before[0])
    for want in sorted({min(2 * page, scan), scan}):
        read = store.records(
            task=where.task, since=where.since, until=until, limit=want + 1, newest_first=True
        )
        rows = sorted(read, key=lambda r: (r.time, r.id), reverse=True)
        if before is not None:
            rows = [r for r in rows if (r.time, r.id) < before]
        more = len(rows) > want
        batch = rows[:want]
        found: list[CallRecord] = []
        for i, r in enumerate(batch, 1):
            if where.matches(r):
                found.append(r)
                if len(found) == page:
                    last = not more and i == len(batch)  # nothing older is stored
                    return CallPage(tuple(found), i, None if last else (r.time, r.id))
        if not more:
            return CallPage(tuple(found), len(batch), None)
    tail = batch[-1]
    return CallPage(tuple(found), len(batch), (tail.time, tail.id))


def iso_time(t: float) -> str:
    """A unix time as ``2024-05-01 12:00:03Z``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _tags(r: CallRecord) -> str:
    tags = ['<span class="tag esc">escalated</span>' if r.escalated else ""]
    tags.append('<span class="tag ok">ok</span>' if r.ok else '<span class="tag bad">not ok</span>')
    if r.mode != "cascade":
        tags.append(f'<span class="tag">{e(r.mode)}</span>')
    return " ".join(t for t in tags if t)


def _failed(r: CallRecord) -> str:
    names = sorted({v.validator for a in r.attempts for v in a.verdicts if not v.passed})
    errors = [a.error for a in r.attempts if a.error]
    return ", ".join(e(n) for n in names + errors) or "\u2014"


def _attempt(i: int, a: Attempt) -> str:
    verdicts = table(
        ["validator", "verdict", "score", "reason"],
        [[e(v.validator), "passed" if v.passed else '<span class="bad">failed</span>',
          UNKNOWN if v.score is None else f"{v.score:.4g}", e(v.reason) or "\u2014"]
         for v in a.verdicts],
    )  # fmt: skip
    facts = (
        f"{e(a.purpose)} · {a.prompt_tokens:,} prompt + {a.completion_tokens:,} completion "
        f"tokens ({a.cached_tokens:,} cached) · {e(money(a.cost_usd))} · "
        f"{a.latency_s * 1000:,.0f} ms · finish {e(a.finish_reason or UNKNOWN)}"
    )
    error = f'<p class="bad">error: {e(a.error)}</p>' if a.error else ""
    return (
        f'<div class="attempt"><h3>Attempt {i}: <code>{e(a.model)}</code> '
        f'{"passed" if a.passed else "rejected"}</h3><p class="sub">{facts}</p>{error}'
        f"{verdicts}<pre>{e(a.output) or '(no output stored)'}</pre></div>"
    )


def _record(r: CallRecord) -> str:
    summary = (
        f'<summary><span class="when">{e(iso_time(r.time))}</span>'
        f'<code>{e(r.model)}</code><span>{_tags(r)}</span><span class="fails">{_failed(r)}</span>'
        f'<span class="n">{e(money(r.cost_usd))}</span>'
        f'<span class="n">{r.latency_s * 1000:,.0f} ms</span>'
        f'<span class="preview">{e((r.input or "")[:90])}</span></summary>'
    )
    stored = UNKNOWN if r.input is None else r.input
    observation = ""
    if r.observation is not None:
        observation = (
            "<h3>Observation</h3><pre>"
            f"{e(json.dumps(r.observation.to_dict(), indent=1, ensure_ascii=False))}</pre>"
        )
    return (
        f'<details class="call" data-id="{e(r.id)}">{summary}<div class="body">'
        f'<p class="sub">id <code>{e(r.id)}</code> · models {e(" → ".join(r.models))} · '
        f"{r.prompt_tokens:,} prompt + {r.completion_tokens:,} completion tokens · cost "
        f"{e(money(r.cost_usd))} (all-strong {e(money(r.baseline_cost_usd))})</p>"
        f"<h3>Input, as stored</h3><pre>{e(stored)}</pre>"
        + "".join(_attempt(i, a) for i, a in enumerate(r.attempts, 1))
        + observation
        + "</div></details>"
    )


def calls_html(
    result: CallPage,
    *,
    title: str,
    form: str,
    next_href: Callable[[tuple[float, str]], str],
) -> str:
    """The Calls body: the filter form, the matching records, and the link to older ones."""
    if result.records:
        head = (
            '<div class="call head"><span class="when">time (UTC)</span><span>answered by</span>'
            '<span>outcome</span><span>failed checks</span><span class="n">cost</span>'
            '<span class="n">latency</span>'
            "<span>input</span></div>"
        )
        listing = head + "".join(_record(r) for r in result.records)
    else:
        listing = '<p class="empty">No stored call matches these filters here.</p>'
    more = ""
    if result.next_before is not None:
        more = f'<a href="{e(next_href(result.next_before))}">older calls \u2192</a>'
    return (
        f"<h1>{e(title)}</h1>{form}"
        f'<p class="sub" data-field="shown">{number(len(result.records))} calls shown; '
        f"{number(result.scanned)} stored records read, newest first. Only stored (sampled) "
        "records are listed: every escalated or failed call, and passing calls at the "
        "policy's sampling rate.</p>"
        f'<div class="calls">{listing}</div><div class="pager">{more}</div>'
    )
