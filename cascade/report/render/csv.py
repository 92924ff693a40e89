"""The report as CSV: one row per task per day."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..build import Report

__all__ = ["CSV_COLUMNS", "render_csv"]

CSV_COLUMNS = (
    "task", "day", "calls", "escalations", "escalation_rate", "cost_usd", "baseline_cost_usd",
    "savings_pct",
)  # fmt: skip


def render_csv(report: Report) -> str:
    """One row per task per day, with a header row (``CSV_COLUMNS``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in report.tasks:
        for d in t.daily:
            rate = d.escalations / d.calls if d.calls else 0.0
            saved = (
                (d.baseline_cost_usd - d.cost_usd) / d.baseline_cost_usd
                if d.baseline_cost_usd
                else ""
            )
            writer.writerow(
                (t.task, d.day, d.calls, d.escalations, f"{rate:.4f}", f"{d.cost_usd:.6f}",
                 f"{d.baseline_cost_usd:.6f}", saved if saved == "" else f"{saved:.4f}")
            )  # fmt: skip
    return out.getvalue()
