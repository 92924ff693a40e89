"""Prometheus collectors of the library's own calls: ``cascade.metrics.enable_metrics()``.

The public name of ``cascade.telemetry.metrics`` (``pip install 'llmcascade[metrics]'``)::

    from prometheus_client import start_http_server
    import cascade.metrics

    cascade.metrics.enable_metrics()        # into prometheus_client's default registry
    start_http_server(9464)

What is counted, and under which names, is in ``cascade.telemetry.metrics``.
"""

from __future__ import annotations

from .telemetry.metrics import CascadeMetrics, enable_metrics

__all__ = ["CascadeMetrics", "enable_metrics"]
