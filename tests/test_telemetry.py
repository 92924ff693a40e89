"""Telemetry: OpenTelemetry spans of an escalating call (captured with the SDK's in-memory
exporter), the proxy continuing a caller's ``traceparent``, nothing without a tracer
provider, and the Prometheus collectors of the library's calls."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import openai
import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once
from prometheus_client import CollectorRegistry

import cascade
from cascade.metrics import enable_metrics
from cascade.proxy import ProxyConfig, ProxyServer, create_app
from cascade.proxy.server import proxy_cascade
from cascade.telemetry import tracing
from cascade.testing import Reply, ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MSGS = [{"role": "user", "content": "Invoice INV-1, total 10"}]
GOOD = json.dumps({"total": 10})


def _reset_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    # As opentelemetry's own test utilities reset it: the global is set-once by design.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A tracer provider set for this test, exporting to memory."""
    _reset_global_provider(monkeypatch)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        s.script("gpt-4o-mini", Reply("no json here", prompt_tokens=100, completion_tokens=5))
        s.script("gpt-4o", Reply(GOOD, prompt_tokens=100, completion_tokens=7))
        yield s


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    policy = {
        "models": ["gpt-4o-mini", "gpt-4o"],
        "validators": [{"type": "json_schema", "schema": {"type": "object"}}],
    }
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
    return tmp_path


def by_name(exporter: InMemorySpanExporter) -> dict[str, Any]:
    return {s.name: s for s in exporter.get_finished_spans()}


def assert_escalation_traced(exporter: InMemorySpanExporter, parent: Any) -> None:
    got = by_name(exporter)
    call, cheap, strong = got["cascade t"], got["chat gpt-4o-mini"], got["chat gpt-4o"]
    assert call.parent.span_id == parent.span_id  # the caller's span is the parent
    assert cheap.parent.span_id == call.context.span_id == strong.parent.span_id
    assert call.kind == trace.SpanKind.INTERNAL and cheap.kind == trace.SpanKind.CLIENT
    assert dict(call.attributes) == {
        "cascade.task": "t",
        "cascade.mode": "cascade",
        "cascade.model": "gpt-4o",
        "cascade.escalated": True,
        "cascade.ok": True,
        "cascade.reasons": ("json_schema: no JSON found in the answer",),
        "cascade.attempts": 2,
        "cascade.cost_usd": pytest.approx(0.000338),
        "cascade.baseline_cost_usd": 0.00032,
    }
    assert dict(strong.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.temperature": 0,
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.response.id": strong.attributes["gen_ai.response.id"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 7,
        "cascade.purpose": "answer",
    }
    assert cheap.attributes["gen_ai.usage.output_tokens"] == 5
    # Nothing of the conversation is put on a span.
    assert "INV-1" not in repr([dict(s.attributes) for s in got.values()])


def test_an_escalating_call_is_a_span_with_a_child_per_attempt(spans, server, policies) -> None:
    tracer = trace.get_tracer("the application")
    c = cascade.Cascade(policies, client=server.client(), store="memory://")
    with c, tracer.start_as_current_span("handle request") as parent:
        c.run("t", MSGS, temperature=0)
    assert_escalation_traced(spans, parent.get_span_context())


async def test_arun_too(spans, server, policies) -> None:
    tracer = trace.get_tracer("the application")
    async with cascade.Cascade(policies, async_client=server.async_client()) as c:
        with tracer.start_as_current_span("handle request") as parent:
            await c.arun("t", MSGS, temperature=0)
    assert_escalation_traced(spans, parent.get_span_context())


def test_a_failed_attempt_and_an_exhausted_call_are_errors(spans, server, tmp_path) -> None:
    server.fail("gpt-4o-mini", 503)
    policy = {"models": ["gpt-4o-mini", "gpt-4o"], "on_exhausted": "raise",
              "validators": [{"type": "structure", "max_chars": 3}]}  # fmt: skip
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
    c = cascade.Cascade(tmp_path, client=server.client(), store="memory://")
    with c, pytest.raises(cascade.EscalationExhausted):
        c.run("t", MSGS)
    got = by_name(spans)
    cheap, call = got["chat gpt-4o-mini"], got["cascade t"]
    assert cheap.status.status_code == StatusCode.ERROR
    assert cheap.attributes["error.type"] == "server_error"
    assert cheap.attributes["http.response.status_code"] == 503
    assert call.status.status_code == StatusCode.ERROR
    assert call.events[0].name == "exception" and call.attributes["cascade.ok"] is False


def test_observe_modes_cheap_run_is_traced_under_the_call(spans, server, tmp_path) -> None:
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"models": ["gpt-4o-mini", "gpt-4o"],
                                                     "mode": "observe"}))  # fmt: skip
    with cascade.Cascade(tmp_path, client=server.client(), store="memory://") as c:
        c.run("t", MSGS)
    got = by_name(spans)
    call = got["cascade t"]
    assert got["chat gpt-4o-mini"].parent.span_id == call.context.span_id  # from its thread
    assert got["chat gpt-4o"].parent.span_id == call.context.span_id


@pytest.mark.parametrize("upstream_http", ["direct", "httpx"])
def test_the_proxy_continues_the_callers_trace(spans, server, policies, upstream_http) -> None:
    config = ProxyConfig(default_task="t", upstream_http=upstream_http)
    c, up = proxy_cascade(policies, "memory://", config, base_url=server.base_url, api_key="k")
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with ProxyServer(create_app(c, config, up)) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0)
        client.chat.completions.create(
            model="any",
            messages=MSGS,  # type: ignore[arg-type]
            extra_headers={"traceparent": f"00-{trace_id}-{span_id}-01"},
        )
        client.close()
    call = by_name(spans)["cascade t"]
    assert f"{call.context.trace_id:032x}" == trace_id
    assert f"{call.parent.span_id:016x}" == span_id
    assert by_name(spans)["chat gpt-4o"].context.trace_id == call.context.trace_id


def test_no_tracer_provider_no_tracer(monkeypatch, server, policies) -> None:
    _reset_global_provider(monkeypatch)
    assert tracing.tracer() is None
    with cascade.Cascade(policies, client=server.client(), store="memory://") as c:
        assert c.run("t", MSGS).escalated
    with tracing.continued(
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    ):
        assert not trace.get_current_span().get_span_context().is_valid


# -- Prometheus ----------------------------------------------------------------------------


def test_prometheus_collectors_count_calls_escalations_cost_and_latency(server, policies) -> None:
    registry = CollectorRegistry()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    metrics = enable_metrics(registry)
    calls = {"task": "t", "model": "gpt-4o", "mode": "cascade", "escalated": "true", "ok": "true"}
    with cascade.Cascade(policies, client=server.client(), store="memory://") as c:
        try:
            c.run("t", MSGS)
            c.run("t", MSGS)
            with pytest.raises(cascade.UnknownTaskError):
                c.run("nope", MSGS)
            assert value("cascade_calls_total", **calls) == 2
            assert value("cascade_escalations_total", task="t", from_model="gpt-4o-mini",
                         to_model="gpt-4o") == 2  # fmt: skip
            cheap_cost = value("cascade_cost_usd_total", task="t", model="gpt-4o-mini")
            assert cheap_cost == pytest.approx(2 * 0.000018)
            strong_cost = value("cascade_cost_usd_total", task="t", model="gpt-4o")
            assert strong_cost == pytest.approx(2 * 0.00032)
            baseline = value("cascade_baseline_cost_usd_total", task="t", model="gpt-4o")
            assert baseline == pytest.approx(2 * 0.00032)
            assert value("cascade_tokens_total", task="t", model="gpt-4o", type="output") == 14
            assert value("cascade_call_duration_seconds_count", task="t") == 2
            attempts = value("cascade_attempt_duration_seconds_count", task="t", model="gpt-4o")
            assert attempts == 2
            # An unknown task fails before there is a policy: no call of any task to count.
            assert value("cascade_errors_total", task="nope", error="UnknownTaskError") is None
        finally:
            metrics.disable()
        c.run("t", MSGS)
    assert value("cascade_calls_total", **calls) is None  # unregistered
    assert metrics not in cascade.telemetry.metrics.INSTALLED  # and no longer counting


def test_a_call_that_raises_is_counted_as_an_error(server, tmp_path) -> None:
    server.fail("gpt-4o-mini", 401)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"models": ["gpt-4o-mini", "gpt-4o"]}))
    registry = CollectorRegistry()
    metrics = enable_metrics(registry)
    try:
        c = cascade.Cascade(tmp_path, client=server.client(), store="memory://")
        with c, pytest.raises(cascade.ProviderError):
            c.run("t", MSGS)
        assert (
            registry.get_sample_value(
                "cascade_errors_total", {"task": "t", "error": "ProviderError"}
            )
            == 1
        )
    finally:
        metrics.disable()
