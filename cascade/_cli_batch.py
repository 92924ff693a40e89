"""The ``batch`` and ``replay`` sub-commands.

``cascade batch --task T DATA.jsonl [--store URL] [--out RESULTS.jsonl]``: every line's
``messages`` (and ``params``) through the task's policy as it is configured (``cascade``,
``observe``, ``strong`` or ``cheap``), recorded in the store like any other call. This is how
a file of real requests becomes observation records for ``cascade calibrate --from-store``,
or a test run for ``cascade report``, without writing an application.

``cascade replay RECORDING... [--port 8000]``: ``cascade.testing.ReplayServer`` (answers from
recorded model outputs) on a port until interrupted, for trying policies on recorded data;
``--requests OUT.jsonl`` writes each recorded query as a request line for ``batch``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._jsonl import objects
from .exceptions import CascadeError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence

    from ._client import Cascade
    from .events import Result

__all__ = ["Request", "add_parsers", "load_requests", "run_batch", "run_replay"]


@dataclass(frozen=True, slots=True)
class Request:
    """One line of a batch file: the messages, other ``create()`` arguments, an id."""

    id: str
    messages: Sequence[Mapping[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)


def load_requests(path: str | Path) -> list[Request]:
    """Read ``{"messages": [...], "params": {...}, "id": ...}`` lines (other keys, such as
    ``reference``, are ignored). Raises ValueError naming the file, the line and the field."""
    out: list[Request] = []
    for no, row in objects(path):
        messages, params = row.get("messages"), row.get("params") or {}
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{path}:{no}: messages: need a non-empty list of messages")
        if not isinstance(params, dict):
            raise ValueError(f"{path}:{no}: params: need an object of create() arguments")
        out.append(Request(str(row.get("id", no)), messages, params))
    return out


def add_parsers(subparsers: Any) -> None:
    """Add ``batch`` and ``replay`` to the ``cascade`` command's sub-parsers."""
    policies = os.environ.get("CASCADE_POLICIES", "policies")
    b = subparsers.add_parser("batch", help="send a JSONL file of requests through a task")
    b.add_argument("data", help="JSONL of {messages[, params, id]}")
    b.add_argument("--task", required=True)
    b.add_argument("--policies", default=policies, help="policy directory")
    b.add_argument("--store", default=None, help="store URL (default: $CASCADE_STORE or embedded)")
    b.add_argument("--out", default=None, metavar="FILE", help="write one result line per request")
    b.add_argument("--concurrency", type=int, default=8)
    b.set_defaults(func=run_batch)

    r = subparsers.add_parser("replay", help="serve recorded model outputs (OpenAI-compatible)")
    r.add_argument("recordings", nargs="+", help="recorded JSONL files or directories of them")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=8000)
    r.add_argument(
        "--requests", default=None, metavar="FILE",
        help="also write each recorded query as a request line for `cascade batch`",
    )  # fmt: skip
    r.set_defaults(func=run_replay)


def _row(req: Request, got: Result | CascadeError) -> dict[str, Any]:
    if isinstance(got, CascadeError):
        return {"id": req.id, "error": f"{type(got).__name__}: {got}"}
    return {
        "id": req.id,
        "model": got.model,
        "escalated": got.escalated,
        "ok": got.ok,
        "output": got.output,
        "cost_usd": got.cost_usd,
        "baseline_cost_usd": got.baseline_cost_usd,
        "reasons": [
            f"{v.validator}: {v.reason}" for a in got.attempts for v in a.verdicts if not v.passed
        ],
        "error": None,
    }


async def _run_all(
    cascade: Cascade, task: str, requests: Sequence[Request], concurrency: int
) -> list[Result | CascadeError]:
    gate = asyncio.Semaphore(max(1, concurrency))
    done, step = 0, max(1, len(requests) // 100)

    async def one(req: Request) -> Result | CascadeError:
        nonlocal done
        async with gate:
            try:
                return await cascade.arun(task, req.messages, **req.params)
            except CascadeError as e:
                return e
            finally:
                done += 1
                if done % step == 0 or done == len(requests):  # at most ~100 updates
                    end = "\n" if done == len(requests) else ""
                    sys.stderr.write(f"\r{task}: {done}/{len(requests)}{end}")

    try:
        return list(await asyncio.gather(*(one(r) for r in requests)))
    finally:
        await cascade.aclose()


def run_batch(args: argparse.Namespace) -> int:
    """``cascade batch``: exit 0 when every request got an answer, 1 when some failed."""
    from ._client import Cascade

    try:
        requests = load_requests(args.data)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cascade = Cascade(args.policies, store=args.store)
    policy = cascade.policies.get(args.task)  # an unknown task fails before any call
    store_url = cascade.store.url
    started = time.perf_counter()
    got = asyncio.run(_run_all(cascade, args.task, requests, args.concurrency))
    elapsed = time.perf_counter() - started
    rows = [_row(req, g) for req, g in zip(requests, got, strict=True)]
    if args.out:
        with Path(args.out).open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    answered = [r for r in rows if r["error"] is None]
    failed = len(rows) - len(answered)
    escalated = sum(bool(r["escalated"]) for r in answered)
    cost = sum(r["cost_usd"] or 0.0 for r in answered)
    baseline = sum(r["baseline_cost_usd"] or 0.0 for r in answered)
    saved = f"{1 - cost / baseline:.1%} saved" if baseline else "no baseline"
    print(
        f"{args.task} (mode {policy.spec.mode}): {len(rows)} requests in {elapsed:.1f} s, "
        f"{escalated} escalated, {failed} failed; ${cost:.6f} against ${baseline:.6f} "
        f"with {policy.strongest} alone ({saved}); recorded in {store_url}"
    )
    for r in rows:
        if r["error"] is not None:
            print(f"  {r['id']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def run_replay(args: argparse.Namespace) -> int:
    """``cascade replay``: serve until interrupted (Ctrl-C exits 0)."""
    from .testing import ReplayServer, load_recorded, record_tag

    try:
        records = load_recorded(*args.recordings)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.requests:
        with Path(args.requests).open("w", encoding="utf-8") as f:
            for rec in records:
                messages = [{"role": "user", "content": rec["user_prompt"]}]
                if rec.get("system_prompt"):
                    messages.insert(0, {"role": "system", "content": rec["system_prompt"]})
                line = {"id": record_tag(rec), "messages": messages,
                        "params": {"user": record_tag(rec)}}  # fmt: skip
                f.write(json.dumps(line) + "\n")
    server = ReplayServer(records, host=args.host, port=args.port).start()
    print(
        f"replaying {len(records)} recorded queries at {server.base_url} "
        "(recorded answers, not live); Ctrl-C to stop",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
