"""``cascade serve``: the OpenAI-compatible proxy on a port.

Importing this module needs nothing beyond the core; starlette and uvicorn (the ``proxy``
extra) are imported only when the command runs.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to ``subparsers`` (from ``add_subparsers``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the OpenAI-compatible proxy (chat completions and Responses through the cascade)",
        description="Serve an OpenAI-compatible API: chat completions and Responses go through "
        "the cascade under the task an X-Cascade-Task header, a route, default_task or a "
        "policy's match: names, else one discovered from the request (the config's discover:; "
        "discover: false passes them through); every other request is forwarded to "
        "OPENAI_BASE_URL with OPENAI_API_KEY. Clients authenticate with "
        "a key from CASCADE_PROXY_KEYS or the config's proxy_keys. Requests are logged (access "
        "log, call events) only with `cascade -v serve`.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)"
    )
    p.add_argument("--port", type=int, default=8787, help="port (default: %(default)s)")
    p.add_argument(
        "--policies",
        default=os.environ.get("CASCADE_POLICIES", "policies"),
        help="policy directory (default: $CASCADE_POLICIES or ./policies)",
    )
    p.add_argument("--store", default=None, help="store URL (default: $CASCADE_STORE or embedded)")
    p.add_argument("--config", default=None, help="proxy config YAML (routes, keys, limits)")
    p.add_argument(
        "--workers", type=int, default=1, help="server processes, one per core (default: 1)"
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build the proxy from ``args`` and the environment and serve until interrupted."""
    try:
        from ..proxy.server import serve
    except ImportError as e:  # the proxy extra is not installed
        print(
            f"error: cascade serve needs the proxy extra ({e.name} is missing): "
            "pip install 'llmcascade[proxy]'",
            file=sys.stderr,
        )
        return 2
    serve(
        policies=args.policies,
        store=args.store,
        config=args.config,
        host=args.host,
        port=args.port,
        workers=args.workers,
        verbose=getattr(args, "verbose", False),  # the global --verbose of `cascade`
    )
    return 0


__all__ = ["add_parser", "run"]
