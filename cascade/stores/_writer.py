"""The background writer shared by the stores that write to disk or to a server.

The caller's thread only appends to a bounded deque (no lock, safe from an event loop too);
one daemon thread reads batches from its head and hands each to the backend's handler. A
record leaves the deque only once the handler returned for it (it was written or spooled),
so at any moment the deque holds exactly the records not yet safe: what ``rescue`` saves when
the process must end before they are written (see ``_shutdown``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .._logging import get_logger
from ..events import CallRecord
from . import _shutdown

log = get_logger()

# The backend's batch handler: (records, a flush or close is waiting) -> seconds until it
# wants to be called again even without new records (a retry, a look at the spool), or None.
# It writes or spools the records; raising ``Keep`` leaves them queued for the next call.
Handler = Callable[[list[CallRecord], bool], float | None]
# Saves records the writer could not handle in time (the store's spool); may raise OSError.
Rescue = Callable[[list[CallRecord]], None]


class Keep(Exception):  # a signal to the writer, not an error
    """Raised by a handler that could neither write nor spool: keep the batch, retry later."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


@dataclass(slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = True  # False: released while records could be neither written nor spooled


_STOP = object()
# How long a batch may wait for more records before it is written: records reach the store
# this much later, in far fewer writes under load.
LINGER_S = 0.05


class BatchWriter:
    """A bounded deque drained by one daemon thread that calls ``handler`` per batch.

    ``submit`` never blocks and returns False when the deque is full or the writer closed;
    ``add`` then hands the record to ``overflow`` (a spool) itself. ``rescue`` receives what
    is left when the writer must stop before handling everything (at exit, on SIGTERM).
    """

    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        queue_size: int,
        batch_size: int,
        linger_s: float = LINGER_S,
        rescue: Rescue | None = None,
        overflow: Rescue | None = None,
        url: str | None = None,
    ):
        self._handler = handler
        self._url = url  # the store's (password masked), named in what is logged
        self._rescue = rescue
        self._overflow = overflow
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._max = queue_size
        self._name = name
        self._closed = False
        self.dropped = 0  # records neither written nor saved by ``rescue``
        self._reset()
        self._start()
        # A forked child has the deque but not the thread: give it its own.
        os.register_at_fork(after_in_child=functools.partial(_restart_in_child, weakref.ref(self)))
        _shutdown.watch(self)

    def _reset(self) -> None:
        self._items: deque[object] = deque()
        self._wake = threading.Event()  # set when the thread sleeps and there is work
        self._hurry = threading.Event()  # set by flush and close: stop lingering
        self._idle = False

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"cascade-{self._name}", daemon=True)
        self._thread.start()

    def submit(self, record: CallRecord) -> bool:
        """Queue a record; False when the writer is closed or the deque full."""
        if self._closed or len(self._items) >= self._max:
            return False
        self._items.append(record)
        if self._idle:
            self._wake.set()
        # Closed meanwhile: the caller saves the record too (stores ignore a repeated id).
        return not self._closed

    def add(self, record: CallRecord) -> None:
        """Queue the record, or give it to ``overflow`` when it cannot be queued; never blocks
        on the handler, never raises (a record nowhere kept is counted in ``dropped``)."""
        if self.submit(record):
            return
        try:
            if self._overflow is None:
                raise OSError("nowhere to keep it")
            self._overflow([record])
        except OSError as e:
            self.dropped += 1
            log.error(
                "cascade.store_dropped", store=self._name, url=self._url, error=str(e), records=1
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is handled; False on timeout or when closed."""
        if not self._thread.is_alive():
            return False
        marker = _Flush()
        self._items.append(marker)
        self._hurry.set()
        self._wake.set()
        return marker.done.wait(timeout) and marker.ok

    def stop(self) -> None:
        """Stop taking records and ask the thread to finish what is queued (returns at once)."""
        self._closed = True
        self._items.append(_STOP)
        self._hurry.set()
        self._wake.set()

    def join(self, timeout: float | None) -> bool:
        """Wait for the thread after ``stop``; True when it handled everything."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self, timeout: float | None = None) -> None:
        """Handle what is queued, then stop the thread; after ``timeout``, rescue the rest."""
        if not self._closed:
            self.stop()
        if not self.join(timeout):
            self.rescue()

    def rescue(self) -> None:
        """Hand every record not yet handled to ``rescue``: lock-free, so that a signal
        handler may call it whatever the interrupted thread held. Records handled meanwhile
        are saved twice; stores ignore the repeat."""
        records = [i for i in list(self._items) if isinstance(i, CallRecord)]
        if not records:
            return
        try:
            if self._rescue is None:
                raise OSError("nowhere to keep them")
            self._rescue(records)
        except Exception as e:
            self.dropped += len(records)
            with contextlib.suppress(Exception):
                log.error(
                    "cascade.store_dropped",
                    store=self._name,
                    url=self._url,
                    records=len(records),
                    error=str(e),
                )

    def _run(self) -> None:
        wait: float | None = 0.0  # call the handler at once: a spool may be waiting
        items = self._items
        while True:
            if not items:
                self._idle = True
                if not items:  # re-read after raising the flag: a submit in between sets _wake
                    self._wake.wait(wait)
                self._idle = False
                self._wake.clear()
            if items and isinstance(items[0], CallRecord) and len(items) < self._batch_size:
                self._linger()  # not when a full batch is waiting already
            n = min(len(items), self._batch_size)
            batch = list(itertools.islice(items, n))
            records = [i for i in batch if isinstance(i, CallRecord)]
            urgent = len(records) < n  # a flush or stop marker is in the batch
            try:
                wait = self._handler(records, urgent)
            except Keep as k:
                for item in list(items):  # no flush waits for what cannot be saved now
                    if isinstance(item, _Flush):
                        item.ok = False
                        item.done.set()
                if not self._closed:
                    self._wake.wait(k.wait)  # a close ends the wait
                    self._wake.clear()
                    continue
                self.rescue()  # closing: what is left is the rescue's (or counted as lost)
                return
            except Exception:  # the thread must survive any backend bug
                with contextlib.suppress(Exception):  # ...and a broken log destination
                    log.exception("cascade.store_writer_failed", records=len(records))
                wait = None
            for _ in range(n):
                done = items.popleft()
                if isinstance(done, _Flush):
                    done.done.set()
                elif done is _STOP:
                    return

    def _linger(self) -> None:
        """Let a batch grow for up to ``linger_s`` after its first record: one write per
        record costs the backend (a transaction, a round trip) far more than one per batch.
        Records arriving meanwhile do not wake this thread (a wake-up per record would cost
        both threads a GIL hand-off); a flush or close ends the wait at once."""
        if self._hurry.wait(self._linger_s):
            self._hurry.clear()


def _restart_in_child(ref: weakref.ReferenceType[BatchWriter]) -> None:
    writer = ref()
    if writer is not None and not writer._closed:
        writer._reset()  # the parent's records are the parent's to write
        writer._start()
