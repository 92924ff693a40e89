"""Telemetry: OpenTelemetry traces and Prometheus metrics of the library's own calls.

Both are optional and off until the application turns them on: traces when it sets an
OpenTelemetry tracer provider (``pip install 'llmcascade[otel]'``), metrics when it calls
``enable_metrics()`` (``pip install 'llmcascade[metrics]'``). See ``tracing`` and ``metrics``.
"""

from __future__ import annotations

from .metrics import CascadeMetrics, enable_metrics

__all__ = ["CascadeMetrics", "enable_metrics"]
