"""``cascade batch --task T DATA.jsonl [--store URL] [--out RESULTS.jsonl]``: every line's
``messages`` (and ``params``) through the task's policy as it is configured (``cascade``,
``observe``, ``strong`` or ``cheap``), recorded in the store like any other call. This is how
a file of real requests becomes observation records for ``cascade calibrate --from-store``,
or a test run for ``cascade report``, without writing an application.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..events import failed_lines
from ..exceptions import CascadeError
from ..stores import delivery_note
from ._common import open_store, progress

if TYPE_CHECKING:
    import argparse

    from ..evals import Example
    from ..events import Result

__all__ = ["add_parser", "run_batch"]


def add_parser(subparsers: Any) -> None:
    """Add ``batch`` to the ``cascade`` command's sub-parsers."""
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
        "reasons": [line for a in got.attempts for line in failed_lines(a.verdicts)],
        "error": None,
    }


def run_batch(args: argparse.Namespace) -> int:
    """``cascade batch``: exit 0 when every request got an answer and every record reached the
    store, 1 when some failed or records wait in the spool (or were lost)."""
    from .._client import Cascade
    from ..evals import load_examples, run_each

    try:
        requests = load_examples(args.data, labelled=False)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cascade = Cascade(args.policies, store=open_store(args.store))
    policy = cascade.policies.get(args.task)  # an unknown task fails before any call
    store_url = cascade.store.url

    async def run_all() -> list[Result | CascadeError]:
        try:
            return await run_each(
                cascade, args.task, requests, concurrency=args.concurrency,
                progress=progress(sys.stderr),
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
    costs = [r["cost_usd"] for r in answered]
    baselines = [r["baseline_cost_usd"] for r in answered]
    if None in costs or None in baselines:  # a model without a known price: say so
        spend = f"cost unknown (a model has no known price) with {policy.strongest} as baseline"
    else:
        cost, baseline = sum(costs), sum(baselines)
        saved = f"{1 - cost / baseline:.1%} saved" if baseline else "no baseline"
        spend = f"${cost:.6f} against ${baseline:.6f} with {policy.strongest} alone ({saved})"
    kept, also = delivery_note(cascade.store)
    print(
        f"{args.task} (mode {policy.spec.mode}): {len(rows)} requests in {elapsed:.1f} s, "
        f"{escalated} escalated, {failed} failed; {spend}; "
        + ("recorded in " if kept is None else "not all recorded in ")
        + store_url
        + ("" if kept is None else " (below)")
    )
    for r in rows:
        if r["error"] is not None:
            print(f"  {r['id']}: {r['error']}", file=sys.stderr)
    if kept is not None:
        print(kept, file=sys.stderr)
    if also is not None:
        print(also, file=sys.stderr)
    return 1 if failed or kept is not None else 0
