"""The report as JSON: ``report_to_dict`` (the schema of ``cascade.report.render``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..observation import observation_to_dict
from ..prerouted import pre_routed_to_dict
from ._format import finite, iso

if TYPE_CHECKING:
    from ..build import Report, TaskReport
    from ..values import Patterns, Term

__all__ = ["SCHEMA_VERSION", "render_json", "report_to_dict"]

SCHEMA_VERSION = 2


def render_json(report: Report) -> str:
    """The report as indented JSON text."""
    return json.dumps(report_to_dict(report), indent=2, ensure_ascii=False) + "\n"


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-able values, in the schema of the module docstring."""
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": iso(report.generated_at),
        "since": iso(report.since),
        "until": iso(report.until),
        "corrupt_records": report.corrupt_records,
        "tasks": [_task_dict(t) for t in report.tasks],
        "overall": _task_dict(report.overall),
    }


def _task_dict(t: TaskReport) -> dict[str, Any]:
    task = {
        "task": t.task,
        "calls": t.calls,
        "escalations": t.escalations,
        "escalation_rate": t.escalation_rate,
        "not_ok": t.not_ok,
        "cost_usd": t.cost_usd if t.costs_known else None,
        "baseline_cost_usd": t.baseline_cost_usd if t.costs_known else None,
        "savings_usd": t.savings_usd if t.costs_known else None,
        "savings_pct": t.savings_pct,
        "uncosted_calls": t.uncosted_calls,
        "latency_p50_ms": finite(t.latency_p50_ms),
        "latency_p95_ms": finite(t.latency_p95_ms),
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "validators": dict(t.validators),
        "top_reasons": {v: [r._asdict() for r in rs] for v, rs in t.top_reasons.items()},
        "daily": [d._asdict() for d in t.daily],
        "hourly": None if t.hourly is None else [h._asdict() for h in t.hourly],
        "patterns": _patterns_dict(t.patterns),
    }
    if t.observation is not None:  # added in version 1: absent, not null, where none was seen
        task["observation"] = observation_to_dict(t.observation)
    if t.pre_routed is not None:  # absent where no call was pre-routed
        task["pre_routed"] = pre_routed_to_dict(t.pre_routed)
    return task


def _patterns_dict(p: Patterns) -> dict[str, Any]:
    return {
        "sampled_records": p.sampled_records,
        "pass_sampling_rate": p.pass_sampling_rate,
        "tested": p.tested,
        "window_rate": p.window_rate,
        "size_buckets": [b._asdict() for b in p.size_buckets],
        "features": [f._asdict() for f in p.features],
        "terms": [_term(t) for t in p.terms],
        "terms_by_validator": {v: [_term(t) for t in ts] for v, ts in p.terms_by_validator.items()},
        "reasons": [{"validator": v, **r._asdict()} for v, r in p.reasons],
        "duplicates": [d._asdict() for d in p.duplicates],
        "suggestions": [{**s._asdict(), "evidence": dict(s.evidence)} for s in p.suggestions],
    }


def _term(t: Term) -> dict[str, Any]:
    return {**t._asdict(), "members": list(t.members)}
