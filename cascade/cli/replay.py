"""``cascade replay RECORDING... [--port 8000]``: ``cascade.testing.ReplayServer`` (answers
from recorded model outputs) on a port until interrupted, for trying policies on recorded data;
``--requests OUT.jsonl`` writes each recorded query as a request line for ``cascade batch``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "run_replay"]


def add_parser(subparsers: Any) -> None:
    """Add ``replay`` to the ``cascade`` command's sub-parsers."""
    r = subparsers.add_parser("replay", help="serve recorded model outputs (OpenAI-compatible)")
    r.add_argument("recordings", nargs="+", help="recorded JSONL files or directories of them")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=8000)
    r.add_argument(
        "--requests", default=None, metavar="FILE",
        help="also write each recorded query as a request line for `cascade batch`",
    )  # fmt: skip
    r.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    """``cascade replay``: serve until interrupted (Ctrl-C exits 0)."""
    from ..testing import ReplayServer, load_recorded, request_of

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
