"""The proxy's counters, rendered in the Prometheus text exposition format (version 0.0.4).

Written by hand: a few counters and one histogram do not justify a dependency. Every update
happens on the server's event loop, so plain dicts need no lock.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..events import Result

# Upper bounds in seconds of ``cascade_latency_seconds``; ``+Inf`` is added when rendering.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The task label of requests naming a task that is neither configured nor discovered: one
# label for all of them, so that /metrics (which needs no key) stays bounded.
UNKNOWN = "_unknown"


class Metrics:
    """Per-task counters of the calls the proxy answered through the cascade."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.escalations: dict[str, int] = defaultdict(int)
        self.errors: dict[tuple[str, int], int] = defaultdict(int)
        self.cost: dict[str, float] = defaultdict(float)
        self.baseline: dict[str, float] = defaultdict(float)
        self.buckets: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.passthrough = 0

    def observe(self, result: Result, latency_s: float) -> None:
        """Count one answered call of ``result.task`` that took ``latency_s`` seconds."""
        task = result.task
        self.calls[task] += 1
        if result.escalated:
            self.escalations[task] += 1
        if result.cost_usd is not None:
            self.cost[task] += result.cost_usd
        if result.baseline_cost_usd is not None:
            self.baseline[task] += result.baseline_cost_usd
        counts = self.buckets.get(task)
        if counts is None:
            counts = self.buckets[task] = [0] * len(LATENCY_BUCKETS_S)
        for i, bound in enumerate(LATENCY_BUCKETS_S):
            if latency_s <= bound:
                counts[i] += 1
                break  # stored per bucket; made cumulative when rendering
        self.latency_sum[task] += latency_s

    def error(self, task: str, status: int) -> None:
        """Count one cascade call of ``task`` that ended in an error response."""
        self.errors[(task, status)] += 1

    def render(self) -> str:
        """The exposition text of every metric."""
        out: list[str] = []
        _counter(out, "cascade_calls_total", "Calls answered through the cascade.", self.calls)
        _counter(
            out,
            "cascade_escalations_total",
            "Calls answered by a model other than the cheapest.",
            self.escalations,
        )
        _counter(out, "cascade_cost_usd_total", "USD spent on every attempt.", self.cost)
        _counter(
            out,
            "cascade_baseline_cost_usd_total",
            "USD the strongest model alone would have cost.",
            self.baseline,
        )
        out.append("# HELP cascade_errors_total Cascade calls answered with an error status.")
        out.append("# TYPE cascade_errors_total counter")
        for (task, status), n in sorted(self.errors.items()):
            out.append(f'cascade_errors_total{{task="{_label(task)}",status="{status}"}} {n}')
        name = "cascade_latency_seconds"
        out.append(f"# HELP {name} Time to answer a cascade call, every attempt included.")
        out.append(f"# TYPE {name} histogram")
        for task, counts in sorted(self.buckets.items()):
            label = _label(task)
            running = 0
            for bound, n in zip(LATENCY_BUCKETS_S, counts, strict=True):
                running += n
                out.append(f'{name}_bucket{{task="{label}",le="{bound}"}} {running}')
            total = self.calls[task]
            out.append(f'{name}_bucket{{task="{label}",le="+Inf"}} {total}')
            out.append(f'{name}_sum{{task="{label}"}} {_num(self.latency_sum[task])}')
            out.append(f'{name}_count{{task="{label}"}} {total}')
        out.append("# HELP cascade_passthrough_total Requests forwarded upstream unchanged.")
        out.append("# TYPE cascade_passthrough_total counter")
        out.append(f"cascade_passthrough_total {self.passthrough}")
        return "\n".join(out) + "\n"


def _counter(
    out: list[str], name: str, help_: str, values: dict[str, int] | dict[str, float]
) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} counter")
    for task, v in sorted(values.items()):
        out.append(f'{name}{{task="{_label(task)}"}} {_num(v)}')


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else repr(float(v))


__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS_S", "UNKNOWN", "Metrics"]
