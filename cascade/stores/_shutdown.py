"""Ending the process without losing records: at exit, and on SIGTERM.

At a normal exit every open store's writer gets ``EXIT_BUDGET_S`` (together, not each) to
write what is queued; whatever is still not written then, including a batch stuck in a slow
send, goes to the store's spool, which the next process replays.

SIGTERM would end the process without running exit hooks, so a handler does the same and
then lets the signal take its course. As a library, cascade installs it only where that
changes nothing else: in the main thread, when SIGTERM still has its default action or a
Python handler (which is then called after ours, exactly as before); never over ``SIG_IGN``
or a handler installed outside Python, and not at all with ``CASCADE_SIGTERM=0``. With the
default action, the handler restores it and raises the signal again, so the process still
ends "killed by SIGTERM" with the same exit status and without running exit hooks. An
application that installs its own handler later replaces ours; its normal exit then runs
the exit hook. ``handle_sigterm()`` installs it explicitly (for stores opened first from
another thread, where Python does not allow installing signal handlers).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import FrameType

    from ._writer import BatchWriter

EXIT_BUDGET_S = 5.0

_writers: weakref.WeakSet[BatchWriter] = weakref.WeakSet()
_lock = threading.Lock()
_registered = False
_previous: Any = None
_installed = False


def watch(writer: BatchWriter) -> None:
    """Close ``writer`` at exit and on SIGTERM (the writer is held weakly)."""
    global _registered
    with _lock:
        _writers.add(writer)
        if not _registered:
            atexit.register(close_all)
            _registered = True
    handle_sigterm()


def close_all(budget: float = EXIT_BUDGET_S) -> None:
    """Stop every writer, wait up to ``budget`` seconds in all, then rescue what is left."""
    writers = list(_writers)
    for w in writers:
        if not w._closed:
            w.stop()
    deadline = time.monotonic() + budget
    for w in writers:
        if not w.join(max(0.0, deadline - time.monotonic())):
            w.rescue()


def handle_sigterm() -> bool:
    """Install the SIGTERM handler if acceptable (see the module docstring); True if it is
    installed now or was already."""
    global _previous, _installed
    if _installed:
        return True
    if os.environ.get("CASCADE_SIGTERM", "1").strip() in {"0", "false", "no", "off"}:
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is not signal.SIG_DFL and not callable(current):
        return False  # ignored on purpose, or handled outside Python: leave it alone
    with contextlib.suppress(ValueError):  # not the main interpreter
        signal.signal(signal.SIGTERM, _on_sigterm)
        _previous, _installed = current, True
    return _installed


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # The interrupted main thread may hold any lock of ours: close in another thread, and
    # rescue what that did not write (rescuing takes no lock).
    closer = threading.Thread(target=close_all, name="cascade-sigterm", daemon=True)
    closer.start()
    closer.join(EXIT_BUDGET_S + 0.5)
    if closer.is_alive():  # stuck on a lock the interrupted thread holds
        for w in list(_writers):
            w.rescue()
    previous = _previous
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)
