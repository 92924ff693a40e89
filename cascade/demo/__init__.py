"""``cascade demo``: the example policies on a small workload, end to end.

Without ``--live`` the answers come from ``cascade.testing.ScriptedServer`` replaying the
scripted replies in ``workload.jsonl`` through the real openai SDK over HTTP: validators,
escalation, the store and the report all run for real; only the model answers are canned.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import openai

from .._client import Cascade
from ..exceptions import CascadeError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from ..events import Result

NOT_LIVE = (
    "NOTE: these answers are NOT live. A local OpenAI-compatible server "
    "(cascade.testing) replays scripted replies; no API was called and no money was spent.\n"
    "      Run `cascade demo --live` with OPENAI_API_KEY set to call the real API."
)


def workload() -> list[dict[str, Any]]:
    """The example calls: task, messages, and each model's scripted reply."""
    text = (resources.files("cascade.demo") / "workload.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _tokens(text: str) -> Iterator[str]:
    for i in range(0, len(text), 4):
        yield text[i : i + 4]


def _reply(spec: Mapping[str, Any]) -> Any:
    from ..testing import Reply

    content = spec["content"]
    logprobs = None
    if "p" in spec:  # every token at probability p: mean and least-probable both read p
        lp = math.log(spec["p"])
        logprobs = [(t, lp) for t in _tokens(content)]
    return Reply(
        content=content, logprobs=logprobs, finish_reason=spec.get("finish_reason", "stop")
    )


def scripted_server(items: list[dict[str, Any]]) -> Any:
    """A started ScriptedServer answering each workload item's messages per model."""
    from ..testing import ScriptedServer

    table = {
        (model, item["messages"][-1]["content"]): _reply(spec)
        for item in items
        for model, spec in item["replies"].items()
    }

    def respond(body: dict[str, Any]) -> Any:
        users = [m for m in body["messages"] if m.get("role") == "user"]
        key = (body["model"], users[-1]["content"] if users else "")
        if key in table:
            return table[key]
        # a model the workload gives no reply for: the stronger one answers like the cheaper
        cheap = table.get(("gpt-4o-mini", key[1]))
        if cheap is None:
            return None
        return cheap

    return ScriptedServer(respond).start()


def _line(result: Result, item: Mapping[str, Any], out: TextIO) -> None:
    text = item["messages"][-1]["content"].replace("\n", " ")
    print(f"\n[{result.task}] {text[:66]}{'...' if len(text) > 66 else ''}", file=out)
    for a in result.attempts:
        marks = ", ".join(
            f"{'ok' if v.passed else 'FAIL'} {v.validator}"
            + ("" if v.passed else f" ({v.reason[:60]})")
            for v in a.verdicts
        ) or (a.error or "")
        cost = "n/a" if a.cost_usd is None else f"${a.cost_usd:.6f}"
        print(f"  {a.model:<12} {a.purpose:<6} {cost:>11}  {marks}", file=out)
    flag = "ESCALATED" if result.escalated else "cheap model accepted"
    answer = result.output.replace("\n", " ")
    print(f"  -> {flag}: {answer[:60]}{'...' if len(answer) > 60 else ''}", file=out)


def run_demo(
    *,
    policies: str | Path = "policies",
    store: str | None = None,
    live: bool = False,
    out: TextIO | None = None,
) -> int:
    """Run the workload through the cascade and print each call and the report (to ``out``,
    default the ``sys.stdout`` of the moment)."""
    out = sys.stdout if out is None else out
    from .. import report as report_mod
    from ..stores import delivery_note, store_from_url

    items = workload()
    if not Path(policies).is_dir():
        print(
            f"error: no policies directory at {policies} (run from the repository root "
            "or pass --policies)",
            file=sys.stderr,
        )
        return 2
    if live and not os.environ.get("OPENAI_API_KEY"):
        print("error: --live needs OPENAI_API_KEY", file=sys.stderr)
        return 2
    server = None if live else scripted_server(items)
    client = openai.OpenAI() if server is None else server.client()
    the_store = store_from_url(store or os.environ.get("CASCADE_STORE"))
    c = Cascade(policies, client=client, store=the_store)
    if not live:
        print(NOT_LIVE, file=out)
    started = time.time()
    total = baseline = 0.0
    try:
        for item in items:
            try:
                result = c.run(item["task"], item["messages"])
            except CascadeError as e:
                print(f"\n[{item['task']}] error: {e}", file=out)
                continue
            _line(result, item, out)
            total += result.cost_usd or 0.0
            baseline += result.baseline_cost_usd or 0.0
    finally:
        the_store.flush()
        if server is not None:
            server.stop()
    print(
        f"\n{len(items)} calls: ${total:.6f} spent, ${baseline:.6f} with gpt-4o alone "
        f"({(1 - total / baseline) * 100 if baseline else 0:.0f}% saved)",
        file=out,
    )
    missing, also = delivery_note(the_store)
    for note in (missing, also):
        if note is not None:
            print(note, file=out)
    if missing is not None:
        print(f"Not all records are in {the_store.url}: no report of this run.", file=out)
        the_store.close()
        return 1
    print(f"Records are in {the_store.url}; the report of this run:\n", file=out)
    rep = report_mod.build_report(the_store, since=started - 1)
    print(report_mod.render(rep, "table"), file=out)
    if not live:
        print("\n" + NOT_LIVE, file=out)
    the_store.close()
    return 0
