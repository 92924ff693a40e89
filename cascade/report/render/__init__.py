"""Renderers of a ``Report``: ``table`` (80 columns), ``json``, ``csv`` and ``html``.

JSON schema, version 2 (``cascade report --format json``). Fields are only ever added
within a version; a removal or a change of meaning bumps ``schema_version`` (the changes
are listed in the README's changelog)::

    {
      "schema_version": 2,
      "generated_at": "2024-05-08T10:00:00Z",    # ISO 8601, UTC
      "since": "2024-05-01T00:00:00Z" | null,     # the span reported (null: open)
      "until": "2024-05-08T00:00:00Z" | null,
      "corrupt_records": 0,                        # stored records skipped as unreadable
      "tasks": [TASK, ...],                        # one per task, sorted by name
      "overall": TASK                              # every task together, "task": "*"
    }

    TASK = {
      "task": "extract",
      "calls": 100, "escalations": 23, "escalation_rate": 0.23, "not_ok": 1,
      "cost_usd": 0.033, "baseline_cost_usd": 0.1,  # baseline: the strong model alone
      "savings_usd": 0.067, "savings_pct": 0.67,     # savings_pct: null without a baseline
      "uncosted_calls": 0,                           # calls of a model without a known price:
                                                     # when > 0 the four above are null
      "latency_p50_ms": 250, "latency_p95_ms": 1000, # bucket upper bounds; null: no calls,
                                                     # or beyond the last finite bound
      "prompt_tokens": 12000, "completion_tokens": 3000,
      "validators": {"schema": 23},                  # failures per validator or provider:<kind>
      "top_reasons": {"schema": [{"reason": "confidence # < #", "calls": 12,
                                  "example": "confidence 0.62 < 0.8"}]},
      "daily": [{"day": "2024-05-01", "calls": 100, "escalations": 23,
                 "cost_usd": 0.033, "baseline_cost_usd": 0.1}],
      "hourly": [{"hour": "2024-05-01T13", "calls": 9, "escalations": 2,  # the same whole
                  "cost_usd": 0.003, "baseline_cost_usd": 0.01}] | null,  # days by UTC hour;
                                                     # null: unknown (no hourly counters kept
                                                     # for a day of it, or over 31 days)
      "patterns": {
        "sampled_records": 30,
        "pass_sampling_rate": 0.1 | null,            # null: no passing call was sampled
        "tested": 640,                               # terms and feature values tested
        "window_rate": 0.12 | null,                  # escalation rate of the records read
        "size_buckets": [{"label": "2k-4k", "calls": 200.0, "escalations": 170, "rate": 0.85,
                          "rate_low": 0.79, "rate_high": 0.9}],   # exact 95% interval
        "features": [{"feature": "language", "value": "de", "calls": 40.0,
                      "escalations": 30, "rate": 0.75, "rate_low": 0.59, "rate_high": 0.87}],
        "terms": [TERM, ...],                        # claimed entries, by rate_low
        "terms_by_validator": {"json_schema": [TERM, ...]},
        "reasons": [{"validator": "schema", "reason": "...", "calls": 12, "example": "..."}],
        "duplicates": [{"size": 5, "example": "user: ..."}],
        "suggestions": [{"kind": "route_by_size", "message": "...",
                         "projected_savings_usd_per_1k_calls": 0.12 | null,
                         "evidence": {...}}]
      },
      "observation": {                               # only where calls were observed
        "calls": 120, "escalations": 30,             # observed; the cascade would escalate
        "escalation_rate": 0.25, "costed_calls": 120, # costed: both costs known
        "strong_cost_usd": 0.12, "projected_cost_usd": 0.05,  # real strong vs cascade cost
        "savings_usd": 0.07, "savings_pct": 0.58 | null,
        "savings_usd_per_1k_calls": 0.58 | null,
        "accepted": 90, "compared": 88, "agreed": 86,  # would-be-accepted answers compared
        "agreement": 0.977 | null, "agreement_ci95": [0.92, 0.994] | null,  # Wilson
        "top_reasons": [{"reason": "json_schema: ...", "calls": 12, "example": "..."}],
        "action": "switch" | "keep_observing" | "do_not_switch",
        "recommendation": "switch to cascade: projected savings 58% (...), agreement ...",
        "judged": 120, "judge_unknown": 1,  # calls with a judge verdict (comparator: judge)
        "judge_cost_usd": 0.004, "judge_cost_per_call_usd": 0.00003 | null,
        "verdicts": {"equivalent": 100, "strong_better": 12, ...}  # each verdict's calls
      },
      "pre_routed": {                                # only where start_at started calls up
        "calls": 40.0, "learned": 30.0,              # estimated calls; by a learned rule
        "calls_low": 31.2, "calls_high": 48.8,       # the calls' 95% interval
        "records": 12,                               # stored records they rest on
        "would_escalate": 28.5,                      # sum of the learned rule's start_p
        "saved_usd": 0.002 | null, "saved_latency_s": 12.1 | null,  # estimated, learned
        "strong_usd": 0.03 | null, "strong_latency_s": 36.0,  # what those calls cost, took
        "cheap_usd": 0.00005 | null, "cheap_latency_s": 0.4 | null,  # the cheap attempt's
        "cheap_calls": 200.0 | null,                 # mean over calls that started cheap
        "cheap_records": 30, "cheap_passes": 10,     # (stored; none passed: means null)
        "exact": false                               # every one stored: calls exact
      }
    }

    TERM = {"term": "refund", "members": ["refund", "my refund"],  # merged: same inputs
            "z": 5.2, "p_value": 1e-7, "q_value": 2e-5,  # stratified (CMH) test, BH-adjusted
            "escalated": 40, "passing": 12.0, "inputs": 52.0,  # inputs holding it (estimated)
            "rate": 0.77, "rate_low": 0.55, "rate_high": 0.91, "confidence": 0.9995,
            "others_rate": 0.1}                      # the inputs without it

Size-bucket and feature ``calls`` are estimates: each stored record counts 1 / its inclusion
probability, over exactly the records read. A term is listed only when it is a discovery at
a false discovery rate of 5% across everything tested and the lower bound of its interval
(at ``confidence``, adjusted for the selection) is above ``others_rate``. Version 2 changed
``terms``: ``z`` was the z-score of a weighted log-odds ratio, terms were ranked by it and not
merged. CSV: one row per task per day, columns ``CSV_COLUMNS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from .csv import CSV_COLUMNS, render_csv
from .html import render_html
from .json import SCHEMA_VERSION, render_json, report_to_dict
from .table import render_table

if TYPE_CHECKING:
    from ..build import Report

__all__ = [
    "CSV_COLUMNS",
    "SCHEMA_VERSION",
    "Format",
    "render",
    "render_csv",
    "render_html",
    "render_json",
    "render_table",
    "report_to_dict",
]

Format = Literal["table", "json", "csv", "html"]
_RENDERERS = {
    "table": render_table,
    "json": render_json,
    "csv": render_csv,
    "html": render_html,
}


def render(report: Report, fmt: Format) -> str:
    """The report as text in format ``fmt``; raises ValueError for an unknown format."""
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown report format {fmt!r}; use table, json, csv or html")
    return renderer(report)
