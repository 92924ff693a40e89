"""What several commands share: the default policy directory, progress bars, a Cascade, the
argument types of shares and probabilities."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._client import Cascade
    from ..evals import Progress
    from ..stores import Store

__all__ = [
    "QUIET_EVERY_S",
    "cascade_of",
    "margin",
    "open_store",
    "policies_default",
    "probability",
    "progress",
    "scorer_importable",
    "share",
]


def policies_default() -> str:
    """``$CASCADE_POLICIES``, else ``policies``."""
    return os.environ.get("CASCADE_POLICIES", "policies")


def open_store(url: str | None) -> Store:
    """``store_from_url`` of ``url``, else ``$CASCADE_STORE``; a URL it refuses is a
    ``StoreError`` (the command's "error:" line and exit 2), not a traceback."""
    from ..exceptions import StoreError
    from ..stores import store_from_url

    try:
        return store_from_url(url or os.environ.get("CASCADE_STORE"))
    except ValueError as e:
        raise StoreError(str(e)) from None


def scorer_importable(scorer: str | None) -> None:
    """Let a ``--scorer module:function`` be imported from the working directory, as
    ``python -m`` would import it (a console script's path starts at its own directory)."""
    if scorer is not None and ":" in scorer:
        here = os.getcwd()
        if here not in sys.path and "" not in sys.path:
            sys.path.insert(0, here)


def share(text: str) -> float:
    """An argparse type: a number in (0, 1], such as a quality target of 0.97."""
    return _between(text, 0.0, 1.0, "a share in (0, 1], e.g. 0.97", closed_high=True)


def probability(text: str) -> float:
    """An argparse type: a number in (0, 1), such as an allowed failure probability."""
    return _between(text, 0.0, 1.0, "a probability in (0, 1), e.g. 0.05", closed_high=False)


def margin(text: str) -> float:
    """An argparse type: a number in [0, 1), such as a relative quality loss allowed."""
    return _between(text, 0.0, 1.0, "a share in [0, 1), e.g. 0.05", closed_low=True)


def _between(
    text: str, low: float, high: float, what: str, *, closed_high: bool = False,
    closed_low: bool = False,
) -> float:  # fmt: skip
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"need {what}, got {text!r}") from None
    if not (low < x < high or (closed_high and x == high) or (closed_low and x == low)):
        raise argparse.ArgumentTypeError(f"need {what}, got {text}")
    return x


QUIET_EVERY_S = 5.0  # off a terminal: one progress line at most this often


def progress(
    stream: TextIO, *, clock: Callable[[], float] = time.monotonic, every_s: float = QUIET_EVERY_S
) -> Progress:
    """A progress bar on ``stream``: ``show(label, done, total)``.

    On a terminal the bar is redrawn in place; elsewhere (a log file, CI) nothing is written
    per request: a plain line at most every ``every_s`` seconds, and one when done.
    """
    tty = stream.isatty()
    last = [clock()]

    def show(mode: str, done: int, total: int) -> None:
        if not tty:
            now = clock()
            if done == total or now - last[0] >= every_s:
                last[0] = now
                stream.write(f"{mode}: {done}/{total}\n")
                stream.flush()
            return
        width = 30
        bar = "#" * (width * done // max(total, 1))
        stream.write(f"\r{mode:>8} [{bar:<{width}}] {done}/{total}")
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


def cascade_of(args: argparse.Namespace) -> Cascade:
    """A Cascade over ``args.policies``, recording in ``args.store`` (default: in memory);
    a store URL it cannot use is a ``StoreError`` now, before any call."""
    from .._client import Cascade

    url = getattr(args, "store", None)
    return Cascade(args.policies, store=open_store(url) if url else "memory://")
