"""The observation in the report: projected escalations, cost, agreement and the verdict."""

from __future__ import annotations

import importlib
import json
from typing import TYPE_CHECKING, Any

import pytest
import yaml

import cascade
from cascade.events import Attempt, CallRecord, Observation
from cascade.report import aggregate, build_report, render
from cascade.report.observation import (
    ObservationCollector,
    ObservationSummary,
    observation_of,
    observation_to_dict,
    wilson_interval,
)
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    from pathlib import Path

DAY0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z
STRONG, CHEAP = 0.001, 0.0001


def observed(
    n: int,
    *,
    decision: str = "accept",
    agree: bool | None = True,
    task: str = "t",
    reasons: tuple[str, ...] = (),
    costs: bool = True,
) -> CallRecord:
    """An observed call as the client records it: the strong answer, the cheap one beside."""
    escalate = decision == "escalate"
    projected = CHEAP + STRONG if escalate else CHEAP
    strong = Attempt("gpt-4o", "answer", "b", (), 100, 10, 0, STRONG, 0.9)
    cheap = Attempt("gpt-4o-mini", "answer", "a", (), 100, 10, 0, CHEAP, 0.3)
    info: dict[str, Any] = {
        "decision": decision, "reasons": list(reasons), "scores": {}, "agree": agree,
        "comparator": "normalized", "cheap_output": "a", "strong_output": "b",
        "cheap_cost_usd": CHEAP if costs else None, "strong_cost_usd": STRONG if costs else None,
        "projected_cost_usd": projected if costs else None,
    }  # fmt: skip
    return CallRecord(
        id=f"{task}-{n}", time=DAY0 + n, task=task, mode="observe",
        models=("gpt-4o", "gpt-4o-mini"), model="gpt-4o", escalated=False, ok=True,
        attempts=(strong, cheap), cost_usd=STRONG + CHEAP, baseline_cost_usd=STRONG,
        latency_s=0.9, prompt_tokens=200, completion_tokens=20, features={},
        input=f"user: message {n}", sampled=True, observation=Observation.from_dict(info),
    )  # fmt: skip


def batch(
    accepted: int = 0, disagree: int = 0, unknown: int = 0, escalated: int = 0, **kw: Any
) -> list[CallRecord]:
    """``accepted`` agreeing accepts, then ``disagree`` / ``unknown`` (agree null) accepts
    and ``escalated`` would-be escalations."""
    out = [observed(i, **kw) for i in range(accepted)]
    out += [observed(1000 + i, agree=False, **kw) for i in range(disagree)]
    out += [observed(2000 + i, agree=None, **kw) for i in range(unknown)]
    reasons = ("json_schema: missing 'total'", "json_schema: missing 'total'", "rate_limit: 429")
    out += [
        observed(3000 + i, decision="escalate", agree=False, reasons=reasons[: 1 + i % 3], **kw)
        for i in range(escalated)
    ]
    return out


def of(records: list[CallRecord], **kw: Any) -> ObservationSummary:
    c = ObservationCollector()
    for r in records:
        c.add(r)
    o = observation_of([c], **kw)
    assert o is not None
    return o


def test_wilson_interval_matches_published_values() -> None:
    low, high = wilson_interval(8, 10) or (0, 0)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(0, 10) or (1, 1)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(10, 10) or (0, 0)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == 1.0
    assert wilson_interval(0, 0) is None


def test_projected_rate_cost_savings_and_agreement_are_exact() -> None:
    o = of(batch(accepted=98, disagree=1, unknown=1, escalated=20))
    assert (o.calls, o.escalations) == (120, 20)
    assert o.escalation_rate == pytest.approx(20 / 120)
    assert o.costed_calls == 120
    assert o.strong_cost_usd == pytest.approx(0.12)
    assert o.projected_cost_usd == pytest.approx(100 * CHEAP + 20 * (CHEAP + STRONG))
    assert o.savings_usd == pytest.approx(0.088)
    assert o.savings_pct == pytest.approx(0.088 / 0.12)
    assert o.savings_usd_per_1k_calls == pytest.approx(0.088 / 120 * 1000)
    assert (o.accepted, o.compared, o.agreed) == (100, 99, 98)
    assert o.agreement == pytest.approx(98 / 99)
    assert (o.agreement_low, o.agreement_high) == wilson_interval(98, 99)
    # a reason repeated within one call counts that call once
    assert [(r.reason, r.calls) for r in o.top_reasons] == [
        ("json_schema: missing 'total'", 20),
        ("rate_limit: #", 6),
    ]


def test_only_observed_records_count() -> None:
    other = observed(1)
    plain = CallRecord(**{**{f: getattr(other, f) for f in other.__slots__}, "mode": "cascade"})
    c = ObservationCollector()
    c.add(plain)
    assert observation_of([c]) is None


def test_switch_when_the_lower_bound_clears_the_threshold() -> None:
    o = of(batch(accepted=200, escalated=50))
    assert o.action == "switch"
    assert o.recommendation == (
        "switch to cascade: projected savings 70% ($0.70 per 1,000 calls), "
        "agreement 100.0% (95% CI 98.1\u2013100.0%)"
    )


def test_keep_observing_with_too_few_calls() -> None:
    o = of(batch(accepted=10))
    assert o.action == "keep_observing"
    assert o.recommendation.startswith("keep observing: 10 observed calls, at least 100 needed")
    assert of(batch(accepted=10), min_calls=10).action == "keep_observing"  # CI too wide


def test_keep_observing_when_agreement_is_high_but_uncertain() -> None:
    o = of(batch(accepted=98, disagree=1, escalated=20))
    assert o.agreement is not None and o.agreement_low is not None
    assert o.agreement >= 0.95 > o.agreement_low
    assert o.action == "keep_observing" and "lower bound is below 95.0%" in o.recommendation


def test_do_not_switch_when_agreement_is_low() -> None:
    o = of(batch(accepted=80, disagree=20, escalated=10))
    assert o.action == "do_not_switch"
    assert o.recommendation.startswith("do not switch: agreement 80.0% (95% CI ")
    assert o.recommendation.endswith("below 95.0%")


def test_the_threshold_is_a_parameter() -> None:
    records = batch(accepted=80, disagree=20, escalated=10)
    assert of(records, threshold=0.7).action == "switch"


def test_do_not_switch_when_the_cascade_would_not_save() -> None:
    o = of(batch(escalated=120))
    assert o.savings_usd < 0 and o.agreement is None
    assert o.action == "do_not_switch"
    assert o.recommendation.startswith(
        "do not switch: the cascade would not save; projected savings -10% "
        "(-$0.10 per 1,000 calls), agreement unknown"
    )


def test_unknown_costs_keep_observing() -> None:
    o = of(batch(accepted=150, costs=False))
    assert o.costed_calls == 0 and o.savings_pct is None and o.savings_usd_per_1k_calls is None
    assert o.action == "keep_observing" and "unknown" in o.recommendation


def test_aggregate_fills_each_task_and_overall() -> None:
    records = batch(accepted=5, task="a") + batch(escalated=3, task="b")
    report = aggregate(records, [], now=DAY0)
    a, b = report.tasks
    assert a.observation is not None and a.observation.calls == 5
    assert b.observation is not None and b.observation.escalations == 3
    assert report.overall.observation is not None
    assert (report.overall.observation.calls, report.overall.observation.escalations) == (8, 3)
    assert aggregate([], [], now=DAY0).overall.observation is None
    plain = json.loads(render(aggregate([], [], now=DAY0), "json"))
    assert "observation" not in plain["overall"]  # only where calls were observed


def test_json_has_the_documented_observation_keys() -> None:
    report = aggregate(batch(accepted=98, disagree=1, escalated=20), [], now=DAY0)
    data = json.loads(render(report, "json"))
    obs = data["tasks"][0]["observation"]
    assert obs == observation_to_dict(report.tasks[0].observation)
    assert obs["agreement_ci95"] == list(wilson_interval(98, 99) or ())
    assert obs["action"] == "keep_observing"
    schema = importlib.import_module("cascade.report.render").__doc__ or ""
    doc = schema.split('"observation"', 1)[1]
    assert all(f'"{key}"' in doc for key in obs)
    assert all(f'"{key}"' in doc for key in obs["top_reasons"][0])


def test_table_shows_the_observation_within_80_columns() -> None:
    report = aggregate(batch(accepted=200, escalated=50), [], now=DAY0)
    text = render(report, "table")
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "  observation (the cheap model watched beside the strong one):" in text
    assert "observed 250 calls; the cascade would escalate 50 (20.0%)" in text
    assert "agreement of would-be-accepted answers 200/200 = 100.0%" in text
    joined = " ".join(text.split())
    assert "=> switch to cascade: projected savings 70%" in joined
    assert "observation" not in render(report, "csv")


def test_html_shows_the_observation_escaped() -> None:
    records = batch(escalated=120, task="<b>")
    page = render(aggregate(records, [], now=DAY0), "html")
    assert "<h2>Observation</h2>" in page and "do not switch: the cascade would not save" in page
    assert "json_schema: missing &#x27;total&#x27;" in page


# --- end to end: a real Cascade in observe mode --------------------------------------------

MSGS_OK = [{"role": "user", "content": "Invoice INV-1, total 10"}]
MSGS_BAD = [{"role": "user", "content": "Invoice INV-2, hard one"}]
GOOD = json.dumps({"invoice_number": "INV-1", "total": 10})


def test_end_to_end_observe_mode_report(tmp_path: Path, server: ScriptedServer) -> None:
    server.script("gpt-4o", GOOD)
    server.script("gpt-4o-mini", "the total is ten", match="hard one")
    server.script("gpt-4o-mini", GOOD)
    policy = {
        "models": ["gpt-4o-mini", "gpt-4o"],
        "mode": "observe",
        "agreement": {"comparator": "json"},
        "validators": [
            {"type": "json_schema", "schema": {"type": "object", "required": ["total"]}}
        ],
    }
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
    c = cascade.Cascade(tmp_path, client=server.client(), store="memory://")
    for msgs in (MSGS_OK, MSGS_OK, MSGS_OK, MSGS_BAD):
        assert c.run("t", msgs).output == GOOD
    c.close()
    (task,) = build_report(c.store).tasks
    o = task.observation
    assert o is not None
    assert (o.calls, o.escalations, o.accepted, o.compared, o.agreed) == (4, 1, 3, 3, 3)
    infos = [r.observation.to_dict() for r in c.store.records(task="t")]
    assert o.strong_cost_usd == pytest.approx(sum(i["strong_cost_usd"] for i in infos))
    assert o.projected_cost_usd == pytest.approx(sum(i["projected_cost_usd"] for i in infos))
    assert o.savings_usd == pytest.approx(o.strong_cost_usd - o.projected_cost_usd)
    assert o.top_reasons[0].reason.startswith("json_schema:")
    assert o.action == "keep_observing"
    assert "observed 4 calls; the cascade would escalate 1 (25.0%)" in render(
        build_report(c.store), "table"
    )
