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
    schema.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the schema."""
    from ..policy import policy_json_schema

    print(json.dumps(policy_json_schema(), indent=2))
    return 0
