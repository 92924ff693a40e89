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
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import CascadeError

if TYPE_CHECKING:
    import argparse

    from .evaluate import Example
    from .events import Result

__all__ = ["add_parsers", "run_batch", "run_replay"]


def add_parsers(subparsers: Any) -> None:
    """Add ``batch`` and ``replay`` to the ``cascade`` command's sub-parsers."""
    b = subparsers.add_parser("batch", help="send a JSONL file of requests through a task")
    b.add_argument("data", help="JSONL of {messages[, params, id]}")
    b.add_argument("--task", required=True)
    b.add_argument(
        "--policies", default=None, help="policy directory (default: $CASCADE_POLICIES or policies)"
    )
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


def _row(req: Example, got: Result | CascadeError) -> dict[str, Any]:
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


def run_batch(args: argparse.Namespace) -> int:
    """``cascade batch``: exit 0 when every request got an answer, 1 when some failed."""
    from ._cli_eval import _progress
    from ._client import Cascade
    from .evaluate import load_examples, run_each

    try:
        requests = load_examples(args.data, labelled=False)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cascade = Cascade(args.policies, store=args.store)
    policy = cascade.policies.get(args.task)  # an unknown task fails before any call
    store_url = cascade.store.url

    async def run_all() -> list[Result | CascadeError]:
        try:
            return await run_each(
                cascade, args.task, requests, concurrency=args.concurrency,
                progress=_progress(sys.stderr),
            )  # fmt: skip
        finally:
            await cascade.aclose()

    started = time.perf_counter()
    got = asyncio.run(run_all())
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
    from .testing import ReplayServer, load_recorded, request_of

    try:
        records = load_recorded(*args.recordings)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.requests:
        with Path(args.requests).open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(request_of(rec)) + "\n" for rec in records)
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
