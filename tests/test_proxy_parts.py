"""The proxy's parts on their own: configuration, key checks, exposure, SSE replay, metrics, CLI."""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import socket
import sys
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING

import pytest
from openai.types.chat import ChatCompletionChunk

from cascade.cli.serve import add_parser, run
from cascade.events import Result
from cascade.proxy import ConfigError, ProxyConfig, Route, build, load_config
from cascade.proxy.config import KeyChecker, check_exposure, is_loopback
from cascade.proxy.metrics import Metrics
from cascade.proxy.server import listening_socket, serve, workers_socket
from cascade.proxy.sse import DONE, chunks, sse

if TYPE_CHECKING:
    from pathlib import Path


def test_config_file_and_environment_keys(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(
        "routes:\n"
        "  - {model: gpt-4o, task: support_summary}\n"
        "  - {metadata: {feature: invoices}, task: invoice_extraction}\n"
        "proxy_keys: [k1]\n"
        "max_body_bytes: 100\n"
    )
    config = load_config(path, {"CASCADE_PROXY_KEYS": " k2, ,k3 "})
    assert config.proxy_keys == ("k1", "k2", "k3")
    assert config.max_body_bytes == 100
    assert config.task_for({"model": "gpt-4o"}) == "support_summary"
    assert config.task_for({"model": "x", "metadata": {"feature": "invoices"}}) == (
        "invoice_extraction"
    )
    assert config.task_for({"model": "x", "metadata": {"feature": "other"}}) is None
    assert config.task_for({"model": "x", "metadata": "not a mapping"}) is None


def test_a_route_matching_model_and_metadata_needs_both() -> None:
    config = ProxyConfig(
        routes=(Route(model="m", metadata={"a": "1"}, task="t"),), default_task="fallback"
    )
    assert config.task_for({"model": "m", "metadata": {"a": "1"}}) == "t"
    assert config.task_for({"model": "m"}) == "fallback"
    assert config.task_for({"model": "n", "metadata": {"a": "1"}}) == "fallback"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routes: [{task: t}]\n", "needs `model` and/or `metadata`"),
        ("rutes: []\n", "rutes: unknown field"),
        ("max_body_bytes: 0\n", "max_body_bytes"),
        ("upstream_http: curl\n", "upstream_http"),
        ("- a list\n", "expected a mapping"),
        ("routes: [\n", "invalid YAML"),
    ],
)
def test_bad_config_files_name_the_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"proxy\.yaml") as e:
        load_config(path, {})
    assert message in str(e.value)


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", {})


def test_key_checker() -> None:
    check = KeyChecker(("alpha", "beta-longer-key"))
    assert check("alpha")
    assert check("beta-longer-key")
    assert not check("alph")
    assert not check("")
    assert not check("alpha ")
    assert ProxyConfig().key_checker() is None


def test_without_keys_only_loopback_is_served() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("localhost")
    assert is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("example.com")
    assert check_exposure(ProxyConfig(), "127.0.0.1") is True  # open: the caller warns
    assert check_exposure(ProxyConfig(proxy_keys=("k",)), "0.0.0.0") is False
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0"):
        check_exposure(ProxyConfig(), "0.0.0.0")


def test_build_refuses_a_public_interface_without_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no proxy keys"):
        build(policies=tmp_path, store="memory://", config=ProxyConfig(), host="0.0.0.0")


async def test_connections_accepted_on_the_serving_socket_send_without_delay() -> None:
    # The socket `cascade serve --workers N` hands its workers: asyncio sets TCP_NODELAY on
    # accepted connections only when it says TCP (else a response written as headers, then
    # body, waits out the client's delayed ACK).
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.get_inheritable()
        server = await asyncio.start_server(on_connect, sock=sock)
        async with server:
            _, client = await asyncio.open_connection(*sock.getsockname())
            served = await accepted
            nodelay = served.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
            served.close()
            client.close()
            await client.wait_closed()
    assert nodelay == 1


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel balances SO_REUSEPORT on Linux")
def test_each_worker_unpickles_a_listening_socket_of_its_own_on_the_same_port() -> None:
    # As uvicorn hands the socket to a spawned worker; a socket of its own (not a copy of
    # one shared socket) lets the kernel spread connections evenly over the workers.
    with (
        workers_socket("127.0.0.1", 0) as shared,
        pickle.loads(ForkingPickler.dumps(shared)) as mine,
    ):
        mine.listen()
        assert mine.getsockname() == shared.getsockname()
        assert mine.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert shared.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
        assert mine.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert mine.proto == socket.IPPROTO_TCP


def test_serve_with_workers_names_a_port_it_cannot_listen_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}: Address"):
            serve(policies=str(tmp_path), store="memory://", port=port, workers=2, verbose=False)


def test_serve_command_refuses_a_public_interface_without_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CASCADE_PROXY_KEYS", raising=False)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "1",
            "--policies",
            str(tmp_path),
            "--store",
            "memory://",
        ]
    )
    assert args.func is run
    assert args.port == 1
    with pytest.raises(ConfigError):
        run(args)


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "x" * 1100,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": 1}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "other", "arguments": "{}"},
                    },
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
}


def test_sse_replays_content_tool_calls_finish_and_usage_as_sdk_chunks() -> None:
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks(COMPLETION, include_usage=True)]
    deltas = [c.choices[0].delta for c in parsed if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == "x" * 1100
    assert sum(1 for d in deltas if d.content) == 3  # 512-character pieces
    calls = [t for d in deltas for t in d.tool_calls or ()]
    assert [(t.index, t.id, t.function.name, t.function.arguments) for t in calls] == [
        (0, "call_1", "lookup", '{"q": 1}'),
        (1, "call_2", "other", "{}"),
    ]
    assert parsed[-2].choices[0].finish_reason == "tool_calls"
    assert parsed[-1].choices == []
    assert parsed[-1].usage.total_tokens == 11
    assert {c.id for c in parsed} == {"chatcmpl-1"}
    assert {c.system_fingerprint for c in parsed} == {"fp_1"}


def test_sse_body_is_data_lines_ending_with_done() -> None:
    body = sse(COMPLETION)
    events = body.split(b"\n\n")
    assert body.endswith(DONE)
    assert events[-1] == b""
    payloads = [json.loads(e[len(b"data: ") :]) for e in events[:-2]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert "usage" not in payloads[-1]


def result(task: str, *, escalated: bool = False, cost: float | None = 0.5) -> Result:
    return Result(
        task=task,
        output="",
        parsed=None,
        model="m",
        escalated=escalated,
        ok=True,
        attempts=(),
        cost_usd=cost,
        baseline_cost_usd=1.0,
    )


def test_metrics_text_format() -> None:
    m = Metrics()
    m.observe(result("a"), 0.003)
    m.observe(result("a", escalated=True, cost=None), 0.2)
    m.observe(result('we"ird\\task'), 100.0)
    m.error("a", 502)
    m.passthrough = 2
    text = m.render()
    lines = text.splitlines()
    assert 'cascade_calls_total{task="a"} 2' in lines
    assert 'cascade_escalations_total{task="a"} 1' in lines
    assert 'cascade_cost_usd_total{task="a"} 0.5' in lines
    assert 'cascade_baseline_cost_usd_total{task="a"} 2.0' in lines
    assert 'cascade_errors_total{task="a",status="502"} 1' in lines
    assert 'cascade_latency_seconds_bucket{task="a",le="0.005"} 1' in lines
    assert 'cascade_latency_seconds_bucket{task="a",le="0.1"} 1' in lines
    assert 'cascade_latency_seconds_bucket{task="a",le="0.25"} 2' in lines
    assert 'cascade_latency_seconds_bucket{task="we\\"ird\\\\task",le="60.0"} 0' in lines
    assert 'cascade_latency_seconds_bucket{task="we\\"ird\\\\task",le="+Inf"} 1' in lines
    assert "cascade_passthrough_total 2" in lines
    assert "# TYPE cascade_latency_seconds histogram" in lines
    assert text.endswith("\n")
