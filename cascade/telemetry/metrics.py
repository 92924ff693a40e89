"""Prometheus metrics of the library's calls, on ``prometheus_client`` collectors.

::

    from prometheus_client import start_http_server
    import cascade.telemetry

    cascade.telemetry.enable_metrics()      # into prometheus_client's default registry
    start_http_server(9464)

Every call answered through any ``Cascade`` of the process is then counted (``namespace``
``cascade``): ``cascade_calls_total{task,model,mode,escalated,ok}``,
``cascade_escalations_total{task,from_model,to_model}``, ``cascade_cost_usd_total{task,model}``
(each attempt's cost, by the rung that spent it), ``cascade_baseline_cost_usd_total{task,model}``
(what the strongest model alone would have cost, by the model that answered),
``cascade_tokens_total{task,model,type}`` (``input`` / ``output``),
``cascade_errors_total{task,error}`` (calls that raised), and the histograms
``cascade_call_duration_seconds{task}`` and ``cascade_attempt_duration_seconds{task,model}``.
Until ``enable_metrics`` is called nothing is counted and nothing is paid. ``cascade serve``
has its own ``/metrics`` (``cascade.proxy.metrics``), which this does not change.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..events import Result

__all__ = ["INSTALLED", "CascadeMetrics", "enable_metrics", "failed", "observe"]

# The enabled collectors; the drivers test this list before calling ``observe``.
INSTALLED: list[CascadeMetrics] = []
_lock = threading.Lock()

_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class CascadeMetrics:
    """The collectors, registered in ``registry`` (default: prometheus_client's ``REGISTRY``).

    Made by ``enable_metrics``; ``disable()`` stops counting and unregisters them.
    """

    def __init__(self, registry: Any = None, namespace: str = "cascade") -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        self.registry = REGISTRY if registry is None else registry
        r, ns = self.registry, namespace
        self.calls = Counter(
            "calls", "Calls answered.", ["task", "model", "mode", "escalated", "ok"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self.escalations = Counter(
            "escalations", "Escalations from one rung to the next.",
            ["task", "from_model", "to_model"], namespace=ns, registry=r,
        )  # fmt: skip
        self.cost = Counter(
            "cost_usd", "USD spent, by the rung that spent it.", ["task", "model"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self.baseline = Counter(
            "baseline_cost_usd", "USD the strongest model alone would have cost.",
            ["task", "model"], namespace=ns, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "tokens", "Tokens, by rung.", ["task", "model", "type"], namespace=ns, registry=r
        )
        self.errors = Counter(
            "errors", "Calls that raised.", ["task", "error"], namespace=ns, registry=r
        )
        self.latency = Histogram(
            "call_duration_seconds", "Time of a whole cascade call.", ["task"],
            buckets=_BUCKETS_S, namespace=ns, registry=r,
        )  # fmt: skip
        self.attempt_latency = Histogram(
            "attempt_duration_seconds", "Time of one model call.", ["task", "model"],
            buckets=_BUCKETS_S, namespace=ns, registry=r,
        )  # fmt: skip
        self._collectors = (
            self.calls, self.escalations, self.cost, self.baseline, self.tokens, self.errors,
            self.latency, self.attempt_latency,
        )  # fmt: skip

    def observe(self, result: Result, latency_s: float) -> None:
        """Count one answered call."""
        task = result.task
        self.calls.labels(
            task, result.model, result.mode, str(result.escalated).lower(), str(result.ok).lower()
        ).inc()
        prev = None
        for a in result.attempts:
            if a.cost_usd is not None:
                self.cost.labels(task, a.model).inc(a.cost_usd)
            if a.prompt_tokens:
                self.tokens.labels(task, a.model, "input").inc(a.prompt_tokens)
            if a.completion_tokens:
                self.tokens.labels(task, a.model, "output").inc(a.completion_tokens)
            self.attempt_latency.labels(task, a.model).observe(a.latency_s)
            if a.purpose == "verify":
                continue
            if result.escalated and prev is not None and a.model != prev:
                self.escalations.labels(task, prev, a.model).inc()
            prev = a.model
        if result.baseline_cost_usd is not None:
            self.baseline.labels(task, result.model).inc(result.baseline_cost_usd)
        self.latency.labels(task).observe(latency_s)

    def failed(self, task: str, error: BaseException) -> None:
        """Count one call that raised ``error``."""
        self.errors.labels(task, type(error).__name__).inc()

    def disable(self) -> None:
        """Stop counting and unregister the collectors."""
        with _lock:
            if self in INSTALLED:
                INSTALLED.remove(self)
        for c in self._collectors:
            self.registry.unregister(c)


def enable_metrics(registry: Any = None, *, namespace: str = "cascade") -> CascadeMetrics:
    """Count every call of this process's Cascades into Prometheus collectors registered
    in ``registry`` (default: prometheus_client's ``REGISTRY``). Needs ``prometheus_client``
    (``pip install 'llmcascade[metrics]'``). Returns the collectors; ``.disable()`` ends it."""
    metrics = CascadeMetrics(registry, namespace)
    with _lock:
        INSTALLED.append(metrics)
    return metrics


def observe(result: Result, latency_s: float) -> None:
    """Count one answered call in every enabled collector set."""
    for m in INSTALLED:
        m.observe(result, latency_s)


def failed(task: str, error: BaseException) -> None:
    """Count one call that raised in every enabled collector set."""
    for m in INSTALLED:
        m.failed(task, error)
