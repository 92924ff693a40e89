"""What the library reports of each finished call: its log events and, when enabled, its
Prometheus metrics. The drivers call these once per call; nothing here changes a call.

Log events (standard library logger ``cascade``, see ``cascade._logging``; silent until the
application configures logging):
``cascade.escalated`` for each climb to another model, ``cascade.call`` per answered call,
``cascade.observed`` per observe-mode comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._logging import get_logger
from . import metrics

if TYPE_CHECKING:
    from ..events import Observation, Result

__all__ = ["answered", "failed", "observed"]

_log = get_logger()


def answered(result: Result, latency: float) -> None:
    """Log a finished call (and its escalations) and count it."""
    prev = None
    for a in result.attempts:
        if prev is not None and a.model != prev.model and a.purpose != "verify":
            _log.info(
                "cascade.escalated",
                task=result.task,
                from_model=prev.model,
                to_model=a.model,
                reasons=prev.reasons,
            )
        if a.purpose != "verify":
            prev = a
    _log.info(
        "cascade.call",
        task=result.task,
        model=result.model,
        models=[a.model for a in result.attempts],
        escalated=result.escalated,
        ok=result.ok,
        prompt_tokens=sum(a.prompt_tokens for a in result.attempts),
        completion_tokens=sum(a.completion_tokens for a in result.attempts),
        cost_usd=result.cost_usd,
        baseline_cost_usd=result.baseline_cost_usd,
        latency_s=round(latency, 6),
    )
    if metrics.INSTALLED:
        metrics.observe(result, latency)


def observed(combined: Result, seen: Observation, latency: float) -> None:
    """Log an observe-mode call's would-be decision and count the call."""
    _log.info(
        "cascade.observed",
        task=combined.task,
        decision=seen.decision,
        agree=seen.agree,
        reasons=list(seen.reasons),
        projected_cost_usd=seen.projected_cost_usd,
        strong_cost_usd=seen.strong_cost_usd,
    )
    if metrics.INSTALLED:
        metrics.observe(combined, latency)


def failed(task: str, error: BaseException) -> None:
    """Count a call that raised."""
    if metrics.INSTALLED:
        metrics.failed(task, error)
