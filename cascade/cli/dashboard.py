"""``cascade dashboard``: the Overview, Task and Calls pages over a store, in a browser.

Importing this module needs nothing beyond the core; starlette and uvicorn (the ``proxy``
extra) are imported only when the command runs.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

_SAMPLE = 1000  # the default of cascade.dashboard's create_app, which needs starlette to import


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dashboard`` sub-command to ``subparsers`` (from ``add_subparsers``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "dashboard",
        help="browse spend, savings, escalations and calls in a local web page",
        description="Serve the dashboard over a store: Overview, Task and Calls pages, with the "
        "figures of `cascade report --format json`. Listening on anything but loopback needs a "
        "key from CASCADE_DASHBOARD_KEYS (comma-separated); the browser asks for it once.",
    )
    p.add_argument(
        "--store", default=None,
        help="store URL (default: $CASCADE_STORE, else the local SQLite store)",
    )  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    p.add_argument("--port", type=int, default=8788, help="port (default: %(default)s)")
    p.add_argument(
        "--sample", type=int, default=_SAMPLE, metavar="N",
        help="a Task page's patterns come from the newest N stored records (default %(default)s)",
    )  # fmt: skip
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard until interrupted; 2 when it cannot start."""
    try:
        from ..dashboard import ExposureError, serve
    except ImportError as e:  # the proxy extra is not installed
        print(
            f"error: cascade dashboard needs the proxy extra ({e.name} is missing): "
            "pip install 'llmcascade[proxy]'",
            file=sys.stderr,
        )
        return 2
    env = os.environ.get("CASCADE_DASHBOARD_KEYS", "")
    keys = tuple(k.strip() for k in env.split(",") if k.strip())
    try:
        serve(
            store=args.store or os.environ.get("CASCADE_STORE") or None,
            host=args.host, port=args.port, keys=keys, sample=args.sample,
        )  # fmt: skip
    except (ExposureError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["add_parser", "run"]
