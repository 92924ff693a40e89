"""The ``cascade`` command: a thin shell over library functions. ``main(argv) -> exit code``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import TYPE_CHECKING

import structlog

from .exceptions import CascadeError

if TYPE_CHECKING:
    from collections.abc import Sequence


def _policies_default() -> str:
    return os.environ.get("CASCADE_POLICIES", "policies")


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(policies=args.policies, store=args.store, live=args.live)


def _schema(args: argparse.Namespace) -> int:
    from .policy import policy_json_schema

    print(json.dumps(policy_json_schema(), indent=2))
    return 0


def _check(args: argparse.Namespace) -> int:
    from .policy import PolicySet

    policies = PolicySet(args.policies)
    tasks = policies.tasks()
    if not tasks:
        print(f"no policy files in {policies.directory}", file=sys.stderr)
        return 1
    failed = 0
    for task in tasks:
        try:
            p = policies.get(task)
        except CascadeError as e:
            failed += 1
            print(f"FAIL {e}", file=sys.stderr)
        else:
            names = ", ".join(getattr(v, "name", type(v).__name__) for v in p.validators)
            print(f"ok   {task}: {' -> '.join(p.models)} [{names}]")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="cascade",
        description="Cheap model first, validated; the strong model only when a check fails.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every call's event to stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the example policies on an example workload")
    demo.add_argument("--policies", default=_policies_default(), help="policy directory")
    demo.add_argument("--store", default=None, help="store URL (default: the embedded store)")
    demo.add_argument("--live", action="store_true", help="call the real API (OPENAI_API_KEY)")
    demo.set_defaults(func=_demo)

    schema = sub.add_parser("schema", help="print the JSON schema of policy files")
    schema.set_defaults(func=_schema)

    check = sub.add_parser("check", help="validate every policy file in a directory")
    check.add_argument("--policies", default=_policies_default(), help="policy directory")
    check.set_defaults(func=_check)

    from . import _cli_batch, _cli_eval, _cli_report

    _cli_report.add_parser(sub)
    _cli_eval.add_parsers(sub)
    _cli_batch.add_parsers(sub)

    from .proxy import cli as _cli_proxy

    _cli_proxy.add_parser(sub)
    return parser


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (it may be replaced meanwhile)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _configure_logging(verbose: bool) -> None:
    """The command line is an application, so it decides where logs go: stderr, keeping
    stdout for reports and JSON; per-call events only with --verbose."""
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.INFO if verbose else logging.WARNING
        ),
        cache_logger_on_first_use=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return int(args.func(args))
    except CascadeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
