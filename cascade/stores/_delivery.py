"""Getting batches into a backend that may be away: send, else spool, replay once it answers.

Shared by the SQLite and Redis stores. A backend's ``send(records)`` raises ``Unavailable``
when it cannot take records now (server down, file unopenable, disk full); any other
exception is taken to be about the records, and the batch is sent again one record at a
time so that only the record that fails alone is rejected (counted and logged). Records
that cannot be sent go to the spool; when the spool cannot be written either, the writer
keeps them queued (``Keep``) and retries. The spool directory is looked at every
``SCAN_S`` seconds, so files left by any process are replayed by whichever runs.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from .._logging import get_logger
from ._writer import Keep

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..events import CallRecord
    from ._spool import Spool

log = get_logger()

SCAN_S = 1.0
_BACKOFF = (0.5, 10.0)


class Unavailable(Exception):  # a state of the backend, raised by send()
    """The backend cannot take records now; they are spooled and sent again later."""


class Delivery:
    """The ``BatchWriter`` handler of one store: ``delivery(records, urgent)``.

    Args:
        url: the store's URL, for logs (already masked).
        send: writes a batch; raises ``Unavailable`` or an error about a record.
        spool: where records wait while ``send`` cannot take them.
        batch_size: records per ``send`` when replaying the spool.
    """

    def __init__(
        self,
        url: str,
        send: Callable[[list[CallRecord]], None],
        spool: Spool,
        batch_size: int,
    ) -> None:
        self.url = url
        self.spool = spool
        self.rejected = 0  # records the backend refused alone, dropped
        self._send = send
        self._batch_size = batch_size
        self._retry_at = 0.0
        self._backoff = 0.0
        self._scan_at = 0.0  # at start: look for files left by other processes

    def __call__(self, records: list[CallRecord], urgent: bool) -> float | None:
        now = time.monotonic()
        if now < self._retry_at and not urgent:
            self._park(records)
            return self._retry_at - now
        try:
            if urgent or self.spool.dirty or now >= self._scan_at:
                self._scan_at = now + SCAN_S
                if self.spool.waiting():
                    replayed = self.spool.replay(self.deliver, self._batch_size)
                    if replayed:
                        log.info("cascade.store_replayed", url=self.url, records=replayed)
            self.deliver(records)
        except Unavailable as e:
            self._backoff = min(max(self._backoff * 2, _BACKOFF[0]), _BACKOFF[1])
            self._retry_at = time.monotonic() + self._backoff
            # With no new records only the spool's replay failed (its records stay there):
            # said at info level, so a closing process does not warn of nothing spooled.
            (log.warning if records else log.info)(
                "cascade.store_unavailable",
                url=self.url,
                error=str(e),
                spooled=len(records),
                retry_in_s=self._backoff,
            )
            self._park(records)
            return self._backoff
        if self._backoff:
            log.info("cascade.store_available", url=self.url)
            self._backoff = 0.0
        return SCAN_S

    def deliver(self, records: list[CallRecord]) -> None:
        """Send records; on an error that is not ``Unavailable``, send them one by one and
        reject only those that fail alone."""
        if not records:
            return
        try:
            self._send(records)
        except Unavailable:
            raise
        except Exception:
            if len(records) == 1:
                self._reject(records[0])
                return
            for r in records:
                try:
                    self._send([r])
                except Unavailable:
                    raise  # those sent already are sent again later, and ignored there
                except Exception:
                    self._reject(r)

    def _reject(self, record: CallRecord) -> None:
        self.rejected += 1
        with contextlib.suppress(Exception):
            log.exception("cascade.store_rejected", url=self.url, id=record.id)

    def _park(self, records: list[CallRecord]) -> None:
        """Spool records, or keep them queued when the spool cannot be written."""
        try:
            self.spool.append(records)
        except OSError as e:
            wait = max(self._retry_at - time.monotonic(), _BACKOFF[0])
            log.error(
                "cascade.spool_unavailable",
                url=self.url,
                directory=str(self.spool.directory),
                error=str(e),
                kept=len(records),
            )
            raise Keep(wait) from e
