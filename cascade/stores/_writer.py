"""The background writer shared by the stores that write to disk or to a server.

The caller's thread only does ``put_nowait`` into a bounded queue (safe from an event loop
too); one daemon thread drains it in batches and hands each batch to the backend.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from ..events import CallRecord

log = structlog.get_logger("cascade")

# The backend's batch handler: (records, a flush is waiting) -> seconds until it wants to be
# called again even without new records (a retry after an outage), or None.
Handler = Callable[[list[CallRecord], bool], float | None]


@dataclass(slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


_STOP = object()
# How long a batch may wait for more records before it is written: records reach the store
# this much later, in far fewer writes under load.
LINGER_S = 0.05


class BatchWriter:
    """A bounded queue drained by one daemon thread that calls ``handler`` per batch.

    ``submit`` never blocks and returns False when the queue is full or the writer closed.
    """

    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        queue_size: int,
        batch_size: int,
        linger_s: float = LINGER_S,
    ):
        self._handler = handler
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._hurry = threading.Event()  # set by flush and close: stop lingering
        self._name = name
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._closed = False
        self._start()
        # A forked child has the queue but not the thread: give it its own.
        os.register_at_fork(after_in_child=functools.partial(_restart_in_child, weakref.ref(self)))
        # A weak reference, so that registering for exit does not keep the store alive.
        self._at_exit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._at_exit)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"cascade-{self._name}", daemon=True)
        self._thread.start()

    def submit(self, record: CallRecord, *, block: bool = False) -> bool:
        """Queue a record; False when the writer is closed or (unless ``block``) the queue full."""
        if self._closed:
            return False
        try:
            self._queue.put(record, block=block)
        except queue.Full:
            return False
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is handled; False on timeout or when closed."""
        if not self._thread.is_alive():
            return False
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        self._hurry.set()
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Handle what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._at_exit)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._hurry.set()
        self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        wait: float | None = None
        while True:
            try:
                items = [self._queue.get(timeout=wait)]
            except queue.Empty:
                items = []
            waiting = self._queue.qsize()
            if items and isinstance(items[0], CallRecord) and waiting < self._batch_size:
                self._linger()  # not when a full batch is waiting already
            while items and len(items) < self._batch_size:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records = [i for i in items if isinstance(i, CallRecord)]
            flushes = [i for i in items if isinstance(i, _Flush)]
            stop = _STOP in items
            try:
                wait = self._handler(records, bool(flushes) or stop)
            except Exception:  # the thread must survive any backend bug
                with contextlib.suppress(Exception):  # ...and a broken log destination
                    log.exception("cascade.store_writer_failed", records=len(records))
                wait = None
            for f in flushes:
                f.done.set()
            if stop:
                return

    def _linger(self) -> None:
        """Let a batch grow for up to ``linger_s`` after its first record: one write per
        record costs the backend (a transaction, a round trip) far more than one per batch.
        Records arriving meanwhile do not wake this thread (a wake-up per record would cost
        both threads a GIL hand-off); a flush or close ends the wait at once."""
        if self._hurry.wait(self._linger_s):
            self._hurry.clear()


def _close_at_exit(ref: weakref.ReferenceType[BatchWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer.close(timeout=5.0)


def _restart_in_child(ref: weakref.ReferenceType[BatchWriter]) -> None:
    writer = ref()
    if writer is not None and not writer._closed:
        writer._queue = queue.Queue(maxsize=writer._queue.maxsize)
        writer._hurry = threading.Event()  # the parent's may have been locked by its thread
        writer._start()
