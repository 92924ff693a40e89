"""Ladders across endpoints: each rung's calls reach its own server with its own key, through
``Cascade.run``/``arun``, ``cascade.run``, ``cascade serve`` (direct, SDK-on-aiohttp and
SDK-on-httpx upstreams), observe mode, eval, ``cascade batch``/``calibrate``/``report`` (priced
per rung), Azure;
keys never reach a record, a log line or an error; the policy errors of rungs and providers."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import openai
import pytest
import structlog
import yaml

import cascade
from cascade.cli import main
from cascade.evals import Example, aevaluate
from cascade.policy import Endpoint, Policy, PolicySet
from cascade.proxy import ProxyConfig, ProxyServer, create_app
from cascade.proxy.server import proxy_cascade
from cascade.testing import Reply, ScriptedServer
from cascade.transports.endpoints import providers_json_schema

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MSGS = [{"role": "user", "content": "Invoice INV-1, total 10"}]
GOOD = json.dumps({"total": 10})
SCHEMA = {"type": "object", "required": ["total"]}
CHEAP_KEY, STRONG_KEY = "sk-cheap-0123456789", "sk-strong-9876543210"


@pytest.fixture
def cheap() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        s.script("llama-3.1-8b-instruct", Reply("no json", prompt_tokens=1000, completion_tokens=0))
        yield s


@pytest.fixture
def strong() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        s.script("gpt-4o", Reply(GOOD, prompt_tokens=1000, completion_tokens=0))
        yield s


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    """The default client's server: no rung of these ladders may reach it."""
    with ScriptedServer() as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-default")
        yield s
        assert s.calls() == []


@pytest.fixture
def policies(
    tmp_path: Path, cheap: ScriptedServer, strong: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Task ``t``: the cheap rung inline at ``cheap``, the strong one a provider at ``strong``."""
    monkeypatch.setenv("CHEAP_KEY", CHEAP_KEY)
    monkeypatch.setenv("STRONG_KEY", STRONG_KEY)
    policy = {
        "models": [
            {
                "name": "llama-3.1-8b-instruct",
                "base_url": cheap.base_url,
                "api_key_env": "CHEAP_KEY",
                "max_retries": 0,
                "price": {"input": 0.05, "output": 0.10},
            },
            {"name": "gpt-4o", "provider": "big"},
        ],
        "validators": [{"type": "json_schema", "schema": SCHEMA}],
    }
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
    providers = {
        "providers": {
            "big": {"base_url": strong.base_url, "api_key_env": "STRONG_KEY", "max_retries": 0}
        }
    }
    (tmp_path / "_providers.yaml").write_text(yaml.safe_dump(providers))
    return tmp_path


def assert_each_got_its_own(
    cheap: ScriptedServer, strong: ScriptedServer, n: int = 1, model: str = "llama-3.1-8b-instruct"
) -> None:
    """Each server received only its own rung's calls (``model`` is the cheap rung's name)."""
    assert [r["model"] for r in cheap.calls()] == [model] * n
    assert [r["model"] for r in strong.calls()] == ["gpt-4o"] * n
    assert {r["_headers"]["authorization"] for r in cheap.calls()} == {f"Bearer {CHEAP_KEY}"}
    assert {r["_headers"]["authorization"] for r in strong.calls()} == {f"Bearer {STRONG_KEY}"}


def assert_priced_per_rung(result: cascade.Result) -> None:
    # 1,000 input tokens at each rung's price: the policy's $0.05 and the table's $2.50.
    assert [a.cost_usd for a in result.attempts] == [pytest.approx(0.00005), 0.0025]
    assert result.cost_usd == pytest.approx(0.00255)
    assert result.baseline_cost_usd == 0.0025


def test_each_rung_is_called_on_its_own_endpoint_with_its_own_key(
    policies, cheap, strong, nowhere
) -> None:
    with cascade.Cascade(policies, store="memory://") as c:
        result = c.run("t", MSGS)
        c.run("t", MSGS)
        records = list(c.store.records())
    assert result.escalated and result.model == "gpt-4o" and result.parsed == {"total": 10}
    assert_each_got_its_own(cheap, strong, n=2)
    assert_priced_per_rung(result)
    assert [a.model for a in records[0].attempts] == ["llama-3.1-8b-instruct", "gpt-4o"]


async def test_arun_too(policies, cheap, strong, nowhere) -> None:
    async with cascade.Cascade(policies, store="memory://") as c:
        result = await c.arun("t", MSGS)
    assert result.escalated
    assert_each_got_its_own(cheap, strong)
    assert_priced_per_rung(result)


def test_the_module_level_run(policies, cheap, strong, nowhere, monkeypatch) -> None:
    monkeypatch.setenv("CASCADE_POLICIES", str(policies))
    monkeypatch.setenv("CASCADE_STORE", "memory://")
    monkeypatch.setattr(cascade._client, "_default", None)  # a fresh default from this env
    try:
        result = cascade.run("t", MSGS)
    finally:
        cascade._client.default().close()
    assert result.escalated
    assert_each_got_its_own(cheap, strong)


def test_one_client_per_endpoint_reused_across_calls_and_policies(policies, strong) -> None:
    transport = cascade.transports.OpenAITransport()
    c = cascade.Cascade(policies, store="memory://", transport=transport)
    try:
        c.run("t", MSGS)
        endpoint = c.policies.get("t").endpoints["gpt-4o"]
        first = transport.endpoints.sync(endpoint)
        c.run("t", MSGS)
        # An equal endpoint written again (another policy naming the same server) shares it.
        assert transport.endpoints.sync(Endpoint(**endpoint.model_dump())) is first
    finally:
        c.close()
    assert first.is_closed()  # closed with the transport


async def test_observe_mode_runs_the_cheap_rung_on_its_endpoint(
    policies, cheap, strong, nowhere
) -> None:
    data = yaml.safe_load((policies / "t.yaml").read_text())
    (policies / "t.yaml").write_text(yaml.safe_dump({**data, "mode": "observe"}))
    async with cascade.Cascade(policies, store="memory://") as c:
        result = await c.arun("t", MSGS)
        await c.drain()
        records = list(c.store.records())
    assert result.model == "gpt-4o" and not result.escalated
    assert_each_got_its_own(cheap, strong)
    assert records[0].observation is not None
    assert records[0].observation.cheap_cost_usd == pytest.approx(0.00005)


async def test_eval_runs_every_mode_on_the_rungs_endpoints(
    policies, cheap, strong, nowhere
) -> None:
    c = cascade.Cascade(policies, store="memory://")
    report = await aevaluate(c, "t", [Example("1", MSGS, GOOD)], scorer="json")
    c.close()
    assert report.summaries["strong"].quality == 1.0 and report.summaries["cheap"].quality == 0.0
    assert len(cheap.calls()) == 2 and len(strong.calls()) == 2  # cheap, strong, cascade
    assert_each_got_its_own(cheap, strong, n=2)


@pytest.mark.parametrize("upstream_http", ["direct", "aiohttp", "httpx"])
def test_cascade_serve_calls_each_rungs_endpoint(
    policies, cheap, strong, nowhere, upstream_http
) -> None:
    (policies / "_providers.yaml").unlink()  # named in the proxy's config instead
    config = ProxyConfig.model_validate(
        {
            "default_task": "t",
            "upstream_http": upstream_http,
            "providers": {
                "big": {"base_url": strong.base_url, "api_key_env": "STRONG_KEY", "max_retries": 0}
            },
        }
    )
    c, up = proxy_cascade(policies, "memory://", config)
    with ProxyServer(create_app(c, config, up)) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0)
        for _ in range(2):
            reply = client.chat.completions.with_raw_response.create(model="any", messages=MSGS)
            assert reply.headers["x-cascade-model"] == "gpt-4o"
            assert reply.headers["x-cascade-cost-usd"] == "0.00255000"
        client.close()
        # The endpoint rungs' clients are on the upstream's HTTP transport, as upstream is.
        endpoint = c.policies.get("t").endpoints["gpt-4o"]
        http = type(c.transport.endpoints.async_(endpoint)._client).__name__
        assert ("AioHttp" in http) == (upstream_http != "httpx")
    assert_each_got_its_own(cheap, strong, n=2)


def test_batch_calibrate_and_the_report_use_each_rungs_endpoint_and_price(
    policies, cheap, strong, nowhere, tmp_path, capsys
) -> None:
    data = tmp_path / "requests.jsonl"
    lines = [{"messages": MSGS, "id": str(i), "reference": GOOD} for i in range(3)]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    batch = ["batch", "--task", "t", "--policies", str(policies), "--store", url, str(data)]
    assert main(batch) == 0
    assert_each_got_its_own(cheap, strong, n=3)
    capsys.readouterr()
    assert main(["report", "--store", url, "--format", "json"]) == 0
    (task,) = json.loads(capsys.readouterr().out)["tasks"]
    # Each call: the cheap rung's 1,000 tokens at its policy's $0.05, the strong one's at $2.50.
    assert task["cost_usd"] == pytest.approx(3 * 0.00255)
    assert task["baseline_cost_usd"] == pytest.approx(3 * 0.0025)
    assert task["uncosted_calls"] == 0

    data_t = yaml.safe_load((policies / "t.yaml").read_text())
    confidence = [{"type": "confidence", "source": "logprobs", "min": 0.5}]
    (policies / "c.yaml").write_text(yaml.safe_dump({**data_t, "validators": confidence}))
    argv = ["calibrate", "--task", "c", "--target", "0.9", "--policies", str(policies)]
    main([*argv, "--data", str(data), "--scorer", "json"])
    out = capsys.readouterr().out
    assert "3 calibration examples" in out and "cheap model 0.0%" in out
    assert "strong model alone: $2.5000 per 1,000 calls" in out  # the strong rung's own price
    assert_each_got_its_own(cheap, strong, n=6)  # batch's 3, then calibrate's cheap and strong


def test_an_azure_rung_through_the_sdks_azure_client(tmp_path, cheap, nowhere, monkeypatch) -> None:
    monkeypatch.setenv("CHEAP_KEY", CHEAP_KEY)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", STRONG_KEY)
    with ScriptedServer() as azure:
        azure.script("gpt-4o", GOOD)
        azure_rung = {"endpoint": azure.url, "deployment": "prod-4o", "api_version": "2024-10-21"}
        policy = {
            "models": [
                {"name": "llama-3.1-8b-instruct", "base_url": cheap.base_url,
                 "api_key_env": "CHEAP_KEY", "price": {"input": 0, "output": 0}},
                {"name": "gpt-4o", "azure": azure_rung, "max_retries": 0},
            ],
            "validators": [{"type": "json_schema", "schema": SCHEMA}],
        }  # fmt: skip
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
        with cascade.Cascade(tmp_path, store="memory://") as c:
            assert c.run("t", MSGS).model == "gpt-4o"
        (call,) = azure.calls()
    assert call["_path"] == "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
    assert call["_headers"]["api-key"] == STRONG_KEY
    assert "authorization" not in call["_headers"]


# -- keys stay out of records, logs and errors -----------------------------------------------


def test_a_key_never_reaches_a_record_a_log_line_or_an_error(
    policies, cheap, strong, nowhere, caplog
) -> None:
    cheap.fail("llama-3.1-8b-instruct", 500, message="upstream broke")
    strong.fail("gpt-4o", 401, message="bad key")
    caplog.set_level(logging.DEBUG)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    c = cascade.Cascade(policies, store="memory://")
    with structlog.testing.capture_logs() as logs, c:
        with pytest.raises(cascade.ProviderError) as refused:
            c.run("t", MSGS)
        c.run("t", MSGS)  # answered after the failures: logged and recorded
        records = list(c.store.records())
    seen = [
        repr(records),
        repr(logs),
        caplog.text,
        str(refused.value),
        repr(refused.value),
        repr(refused.value.__cause__),
        repr(c.policies.get("t")),
    ]
    assert records and logs
    for text in seen:
        assert CHEAP_KEY not in text and STRONG_KEY not in text


def test_a_missing_key_raises_naming_the_variable_not_calling(policies, cheap, monkeypatch) -> None:
    monkeypatch.delenv("CHEAP_KEY")
    with (
        cascade.Cascade(policies, store="memory://") as c,
        pytest.raises(cascade.ProviderError, match="CHEAP_KEY is not set") as info,
    ):
        c.run("t", MSGS)
    assert info.value.status == 401 and cheap.calls() == []


def test_a_local_server_without_a_key_variable_gets_none_of_ours(
    tmp_path, cheap, strong, nowhere
) -> None:
    policy = {
        "models": [{"name": "llama-3.1-8b-instruct", "base_url": cheap.base_url},
                   {"name": "gpt-4o", "base_url": strong.base_url}],
        "validators": [{"type": "json_schema", "schema": SCHEMA}],
        "prices": {"llama-3.1-8b-instruct": {"input": 0, "output": 0}},
    }  # fmt: skip
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
    with cascade.Cascade(tmp_path, store="memory://") as c:
        c.run("t", MSGS)
    headers = [r["_headers"]["authorization"] for r in (*cheap.calls(), *strong.calls())]
    assert headers == ["Bearer none", "Bearer none"]


# -- the policy side ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "field", "message"),
    [
        ([{"name": "a", "provider": "nope"}, "b"], "models[0].provider", "unknown provider"),
        ([{"name": "a", "provider": "p", "base_url": "http://x"}, "b"], "models[0]", "not both"),
        (
            [
                {
                    "name": "a",
                    "base_url": "http://x",
                    "azure": {"endpoint": "e", "api_version": "v"},
                },
                "b",
            ],
            "models[0]",
            "not both",
        ),
        ([{"name": "a", "base_ur": "http://x"}, "b"], "models[0]", "unknown field"),
        ([{"name": "a", "api_key_env": "has space"}, "b"], "models[0]", "pattern"),
        ([{"name": "a"}, "a"], "models", "distinct"),
        ([{"name": "a", "price": {"input": 1, "output": 1}}, "b"], "models[0].price", "twice"),
    ],
)
def test_broken_rungs_name_the_file_and_the_field(tmp_path, models, field, message) -> None:
    path = tmp_path / "t.yaml"
    prices = {"a": {"input": 1, "output": 1}} if message == "twice" else {}
    path.write_text(yaml.safe_dump({"models": models, "prices": prices}))
    with pytest.raises(cascade.PolicyError) as info:
        Policy.load(path, providers={"p": Endpoint(base_url="http://p")})
    err = info.value
    assert err.path == path and err.field is not None and err.field.startswith(field)
    assert message in str(err) and str(path) in str(err)


def test_a_broken_providers_file_names_itself_and_the_field(tmp_path) -> None:
    (tmp_path / "_providers.yaml").write_text("providers: {local: {base_url: x, key: y}}")
    (tmp_path / "t.yaml").write_text("models: [a, b]")
    policies = PolicySet(tmp_path)
    assert policies.tasks() == ["t"]  # the providers file is no task
    with pytest.raises(cascade.PolicyError) as info:
        policies.get("t")
    assert info.value.field == "providers.local.key"
    assert str(tmp_path / "_providers.yaml") in str(info.value)


def test_a_provider_named_twice_is_refused(tmp_path) -> None:
    (tmp_path / "_providers.yaml").write_text("providers: {local: {base_url: http://a}}")
    (tmp_path / "t.yaml").write_text("models: [{name: a, provider: local}, b]")
    policies = PolicySet(tmp_path, providers={"local": Endpoint(base_url="http://b")})
    with pytest.raises(cascade.PolicyError, match="also named"):
        policies.get("t")


def test_bare_names_keep_the_default_client_and_changed_copies_keep_the_rungs(tmp_path) -> None:
    plain = Policy.from_dict({"task": "t", "models": ["gpt-4o-mini", "gpt-4o"]})
    assert plain.endpoints == {}
    (tmp_path / "_providers.yaml").write_text("providers: {local: {base_url: http://a/v1}}")
    (tmp_path / "t.yaml").write_text("models: [{name: gpt-4o-mini, provider: local}, gpt-4o]")
    policy = PolicySet(tmp_path).get("t")
    assert policy.models == ("gpt-4o-mini", "gpt-4o")
    assert policy.with_changes(mode="strong").endpoints == policy.endpoints
    assert policy.endpoints["gpt-4o-mini"].base_url == "http://a/v1"


def test_the_schemas_describe_rungs_and_providers(capsys) -> None:
    from cascade.cli import main

    assert main(["schema"]) == 0
    schema: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert "Rung" in schema["$defs"] and "AzureSpec" in schema["$defs"]
    assert main(["schema", "--providers"]) == 0
    assert json.loads(capsys.readouterr().out) == providers_json_schema()


# -- discovered tasks: the defaults policy's rungs name providers as a policy's do ---------

SYSTEM = "Extract the invoice total from the customer's message as JSON."
DISCOVERED = [{"role": "system", "content": SYSTEM}, *MSGS]


@pytest.fixture
def discover(cheap: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``discover: {mode: cascade, models: [cheap-local, gpt-4o]}``, each rung a provider."""
    monkeypatch.setenv("CHEAP_KEY", CHEAP_KEY)
    monkeypatch.setenv("STRONG_KEY", STRONG_KEY)
    cheap.script("cheap-local", Reply("no json", prompt_tokens=1000, completion_tokens=0))
    return {
        "mode": "cascade",
        "models": [
            {"name": "cheap-local", "provider": "local", "price": {"input": 0.05, "output": 0.1}},
            {"name": "gpt-4o", "provider": "big"},
        ],
        "validators": [{"type": "json_schema", "schema": SCHEMA}],
    }


def providers_of(cheap: ScriptedServer, strong: ScriptedServer) -> dict[str, Any]:
    return {
        "local": {"base_url": cheap.base_url, "api_key_env": "CHEAP_KEY", "max_retries": 0},
        "big": {"base_url": strong.base_url, "api_key_env": "STRONG_KEY", "max_retries": 0},
    }


@pytest.mark.parametrize("upstream_http", ["direct", "httpx"])
def test_cascade_serve_runs_a_discovered_tasks_rungs_on_their_providers(
    tmp_path, cheap, strong, nowhere, discover, upstream_http
) -> None:
    policies = tmp_path / "empty"
    policies.mkdir()
    config = ProxyConfig.model_validate(
        {"upstream_http": upstream_http, "discover": discover,
         "providers": providers_of(cheap, strong)}
    )  # fmt: skip
    c, up = proxy_cascade(policies, "memory://", config)
    with ProxyServer(create_app(c, config, up)) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0)
        for _ in range(2):
            reply = client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=DISCOVERED
            )
            assert reply.headers["x-cascade-task"].startswith("extract-the-invoice-total-")
            assert reply.headers["x-cascade-model"] == "gpt-4o"
            assert reply.headers["x-cascade-escalated"] == "true"
        client.close()
    assert_each_got_its_own(cheap, strong, n=2, model="cheap-local")


def test_a_discovered_task_in_cascade_mode_takes_providers_from_the_policies_dir(
    tmp_path, cheap, strong, nowhere, discover
) -> None:
    policies = tmp_path / "p"
    policies.mkdir()
    providers = {"providers": providers_of(cheap, strong)}
    (policies / "_providers.yaml").write_text(yaml.safe_dump(providers))
    with cascade.Cascade(policies, store="memory://", discover=discover) as c:
        result = c.run(None, DISCOVERED, model="gpt-4o")
        with cascade.wrap(openai.OpenAI(api_key="sk-wrapped"), cascade=c) as client:
            reply = client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=DISCOVERED
            )
    assert (
        result.escalated
        and result.model == "gpt-4o"
        and result.task == reply.headers["x-cascade-task"]
    )
    assert reply.headers["x-cascade-model"] == "gpt-4o"
    assert_each_got_its_own(cheap, strong, n=2, model="cheap-local")


def test_the_proxy_refuses_at_start_a_discover_rung_naming_an_unknown_provider(
    tmp_path, nowhere
) -> None:
    # Not at config load: the provider may be named in the policies' _providers.yaml.
    data = {"discover": {"models": [{"name": "gpt-4o-mini", "provider": "nowhere"}, "gpt-4o"]}}
    (tmp_path / "empty").mkdir()
    config = ProxyConfig.model_validate(data)
    with pytest.raises(cascade.PolicyError, match="unknown provider 'nowhere'"):
        proxy_cascade(tmp_path / "empty", "memory://", config)
