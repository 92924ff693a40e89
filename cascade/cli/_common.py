"""What several commands share: the default policy directory, progress bars, a Cascade."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    import argparse

    from .._client import Cascade
    from ..evals import Progress

__all__ = ["cascade_of", "policies_default", "progress"]


def policies_default() -> str:
    """``$CASCADE_POLICIES``, else ``policies``."""
    return os.environ.get("CASCADE_POLICIES", "policies")


def progress(stream: TextIO) -> Progress:
    """A progress bar on ``stream``: ``show(label, done, total)``."""

    def show(mode: str, done: int, total: int) -> None:
        width = 30
        bar = "#" * (width * done // max(total, 1))
        stream.write(f"\r{mode:>8} [{bar:<{width}}] {done}/{total}")
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


def cascade_of(args: argparse.Namespace) -> Cascade:
    """A Cascade over ``args.policies``, recording in ``args.store`` (default: in memory)."""
    from .._client import Cascade

    return Cascade(args.policies, store=getattr(args, "store", None) or "memory://")
