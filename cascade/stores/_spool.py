"""A local spool: JSON Lines files that keep records while their server is unreachable.

Each process appends to its own file. Replaying claims a file by renaming it (so two
processes sharing the directory never replay the same file at once), sends its records,
and deletes it; when sending fails the file goes back to the spool under a new name.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import TYPE_CHECKING

import structlog

from ._codec import CorruptRecordError, decode, encode

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from ..events import CallRecord

log = structlog.get_logger("cascade")

# A claimed file left by a process that died while replaying it is taken back after this long.
_STALE_CLAIM_S = 300.0
# Another process's spool file is only claimed once it has been quiet this long, so that a
# rename never races with an append still in progress there.
_QUIET_S = 2.0


class Spool:
    """Spool files in one directory (created on first use)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.corrupt_lines = 0
        self._lock = threading.Lock()
        self._token = uuid.uuid4().hex[:12]
        # True when files may be waiting: set on append, and at start for files left over.
        self.dirty = directory.is_dir() and any(self._claimable())

    def _own_file(self) -> Path:
        # The pid is read on each append so that a forked child writes a file of its own.
        return self.directory / f"{os.getpid()}-{self._token}.jsonl"

    def append(self, records: list[CallRecord]) -> None:
        """Add records to this process's spool file."""
        if not records:
            return
        lines = "".join(encode(r) + "\n" for r in records)
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self._own_file().open("a", encoding="utf-8") as f:
                f.write(lines)
            self.dirty = True

    def _claimable(self) -> Iterator[Path]:
        now = time.time()
        mine = self._own_file()
        for path in self.directory.glob("*.jsonl"):
            if path == mine or _mtime(path) < now - _QUIET_S:
                yield path
        for path in self.directory.glob("*.replaying"):
            if _mtime(path) < now - _STALE_CLAIM_S:
                yield path

    def replay(self, send: Callable[[list[CallRecord]], object], batch_size: int) -> int:
        """Send every spooled record in batches, deleting each file once sent.

        Returns how many records were sent. An exception from ``send`` puts the file back
        and propagates (records already sent are sent again later: the receiver dedupes).
        """
        if not self.directory.is_dir():
            self.dirty = False
            return 0
        with self._lock:
            self.dirty = False
            paths = sorted(self._claimable(), key=_mtime)
        sent = 0
        for path in paths:
            claimed = path.with_name(f"{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.replaying")
            try:
                with self._lock:  # our own file may be being appended to
                    path.rename(claimed)
            except FileNotFoundError:
                continue  # another process claimed it first
            try:
                for batch in _batches(self._read(claimed), batch_size):
                    send(batch)
                    sent += len(batch)
            except BaseException:
                claimed.rename(self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl")
                with self._lock:
                    self.dirty = True
                raise
            claimed.unlink()
        return sent

    def _read(self, path: Path) -> Iterator[CallRecord]:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    yield decode(line)
                except CorruptRecordError as e:
                    # A torn last line after a crash, or a damaged file: skip, keep the rest.
                    self.corrupt_lines += 1
                    log.warning("cascade.spool_corrupt_line", file=str(path), error=str(e))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # claimed by another process meanwhile
        return float("inf")


def _batches(records: Iterator[CallRecord], size: int) -> Iterator[list[CallRecord]]:
    batch: list[CallRecord] = []
    for r in records:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
