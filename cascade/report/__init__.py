"""The report: what the cascade cost, saved and escalated, and why calls escalate.

``build_report(store)`` reads a store once into a ``Report``; ``render(report, fmt)`` shows it
as a table, JSON, CSV or HTML. ``build`` aggregates the counters and records, ``collect``
streams over the sampled records, ``patterns``, ``text`` and ``suggest`` find what escalates
and what to change, ``observation`` summarises observe mode, ``values`` holds the results.
"""

from __future__ import annotations

from .build import (
    DEFAULT_SAMPLE,
    DayRow,
    Report,
    TaskReport,
    aggregate,
    build_report,
    latency_quantile,
)
from .observation import ObservationSummary, observation_of, wilson_interval
from .render import Format, render, report_to_dict
from .tasks import TaskRow, render_tasks, task_rows
from .values import (
    DuplicateGroup,
    FeatureRate,
    Patterns,
    ReasonCount,
    SizeBucket,
    Suggestion,
    Term,
    Totals,
)

__all__ = [
    "DEFAULT_SAMPLE",
    "DayRow",
    "DuplicateGroup",
    "FeatureRate",
    "Format",
    "ObservationSummary",
    "Patterns",
    "ReasonCount",
    "Report",
    "SizeBucket",
    "Suggestion",
    "TaskReport",
    "TaskRow",
    "Term",
    "Totals",
    "aggregate",
    "build_report",
    "latency_quantile",
    "observation_of",
    "render",
    "render_tasks",
    "report_to_dict",
    "task_rows",
    "wilson_interval",
]
