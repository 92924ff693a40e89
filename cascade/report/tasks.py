"""``cascade tasks``: every task seen in a store, discovered or configured, in one table.

One row per task: calls, spend and its share of all spend, the mode of its latest recorded
call, its escalation rate (in observe mode the would-be rate), and for observed tasks the
agreement with the strong model, the projected savings and the recommendation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from .build import DEFAULT_SAMPLE, build_report

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..stores import Store

__all__ = ["TaskRow", "render_tasks", "task_rows"]


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task of ``cascade tasks``. ``kind`` is ``discovered`` (named from its requests'
    fingerprint), ``configured`` (a policy file or a caller named it) or ``unknown`` (no
    policy file, and no call of it stored whole to say: its passes were only counted; ``mode``
    is then ``unknown`` too); ``cost_usd`` and
    ``share`` are None when a model's price is unknown; the ``agreement`` (with its Wilson
    95% interval), ``projected_savings_pct`` and ``action``/``recommendation`` come from the
    observed calls (None and empty without any)."""

    task: str
    kind: Literal["discovered", "configured", "unknown"]
    calls: int
    cost_usd: float | None
    share: float | None
    mode: str
    escalation_rate: float
    agreement: float | None = None
    agreement_low: float | None = None
    agreement_high: float | None = None
    compared: int = 0
    projected_savings_pct: float | None = None
    action: str = ""
    recommendation: str = ""
    fingerprint: str | None = None


def task_rows(
    store: Store, *, configured: Iterable[str] = (), sample: int | None = DEFAULT_SAMPLE
) -> list[TaskRow]:
    """The rows of every task in ``store``, the most spent first. ``configured``: the tasks
    of the policy directory (the others are discovered when their records say so)."""
    report = build_report(store, sample=sample)
    named = set(configured)
    total = None if not report.overall.costs_known else report.overall.cost_usd
    rows = []
    for t in report.tasks:
        latest = next(iter(store.records(task=t.task, limit=1, newest_first=True)), None)
        found = latest.extra.get("discovered") if latest is not None else None
        discovered = isinstance(found, dict) and t.task not in named
        kind: Literal["discovered", "configured", "unknown"] = (
            "discovered" if discovered else "configured"
        )
        if latest is None and t.task not in named:
            kind = "unknown"
        cost = t.cost_usd if t.costs_known else None
        obs = t.observation
        observed = obs is not None and obs.calls > 0
        rows.append(
            TaskRow(
                task=t.task,
                kind=kind,
                calls=t.calls,
                cost_usd=cost,
                share=None if cost is None or not total else cost / total,
                mode=latest.mode if latest is not None else "unknown",
                escalation_rate=obs.escalation_rate if observed and obs else t.escalation_rate,
                agreement=obs.agreement if obs else None,
                agreement_low=obs.agreement_low if obs else None,
                agreement_high=obs.agreement_high if obs else None,
                compared=obs.compared if obs else 0,
                projected_savings_pct=obs.savings_pct if observed and obs else None,
                action=obs.action if observed and obs else "",
                recommendation=obs.recommendation if observed and obs else "",
                fingerprint=str(found.get("fingerprint")) if discovered and found else None,
            )
        )
    rows.sort(key=lambda r: (-(r.cost_usd or 0.0), -r.calls, r.task))
    return rows


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def render_tasks(rows: list[TaskRow], fmt: Literal["table", "json"] = "table") -> str:
    """The rows as a text table or as JSON (``{"tasks": [...]}``)."""
    if fmt == "json":
        return json.dumps({"tasks": [asdict(r) for r in rows]}, indent=2) + "\n"
    if not rows:
        return "no tasks recorded yet\n"
    head = ("task", "kind", "calls", "spend", "share", "mode", "escalation", "agreement",
            "projected savings", "recommendation")  # fmt: skip
    table: list[tuple[str, ...]] = [head]
    for r in rows:
        agreement = "-"
        if r.agreement is not None:
            agreement = f"{r.agreement:.1%} of {r.compared}"
        table.append((
            r.task, r.kind, str(r.calls),
            "unknown" if r.cost_usd is None else f"${r.cost_usd:.4f}",
            _pct(r.share), r.mode, _pct(r.escalation_rate), agreement,
            _pct(r.projected_savings_pct), r.action.replace("_", " ") or "-",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in table]  # fmt: skip
    return "\n".join(lines) + "\n"
