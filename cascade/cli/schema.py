"""``cascade schema``: the JSON schema of policy files, for editors."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add ``schema`` to the ``cascade`` command's sub-parsers."""
    schema = subparsers.add_parser("schema", help="print the JSON schema of policy files")
    schema.add_argument(
        "--providers", action="store_true", help="the schema of policies/_providers.yaml instead"
    )
    schema.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the schema."""
    from ..policy import policy_json_schema
    from ..transports.endpoints import providers_json_schema

    schema = providers_json_schema() if args.providers else policy_json_schema()
    print(json.dumps(schema, indent=2))
    return 0
