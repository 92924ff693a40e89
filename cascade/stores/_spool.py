"""A local spool: JSON Lines files that keep records while their store cannot take them.

Every process of the machine that opens the same store shares one spool directory, and any
of them replays any file in it, so a record spooled by a process that has ended reaches the
store through whichever process runs next or still runs. Files are guarded by ``flock``:
an append holds the lock on its file, and a replay claims a file by taking the lock and
renaming it (``*.replaying``), holding the lock until the file is sent and deleted. A claim
whose lock is free was left by a process that died while replaying: it is taken over at once.
An append that finds its file renamed under it starts a new one, so no line is ever written
to a file that has been claimed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .._logging import get_logger
from ._codec import CorruptRecordError, decode, encode

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..events import CallRecord

log = get_logger()


def default_spool_dir() -> Path:
    """``${CASCADE_HOME:-${XDG_STATE_HOME:-~/.local/state}/cascade}/spool``."""
    home = os.environ.get("CASCADE_HOME")
    if not home:
        state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        home = os.path.join(state, "cascade")
    return Path(home).expanduser() / "spool"


class Spool:
    """Spool files in one directory (created on first use).

    ``rejected`` counts records that could not be encoded (they are logged and left out);
    ``corrupt_lines`` counts unreadable lines skipped on replay.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.corrupt_lines = 0
        self.rejected = 0
        self._token = uuid.uuid4().hex[:12]
        # Set on each append by this process: its own file waits to be replayed.
        self.dirty = False

    @property
    def owner(self) -> str:
        """What this process's file names start with: its pid (read each time, so that a
        forked child writes files of its own) and this spool's token (so that an earlier
        process of the same pid, as in a container, is another owner)."""
        return f"{os.getpid()}-{self._token}"

    def _own_file(self) -> Path:
        return self.directory / f"{self.owner}.jsonl"

    def _lines(self, records: list[CallRecord]) -> str:
        lines = []
        for r in records:
            try:
                lines.append(encode(r) + "\n")
            except (TypeError, ValueError) as e:  # one bad record must not cost the others
                self.rejected += 1
                log.error("cascade.store_rejected", id=r.id, error=str(e))
        return "".join(lines)

    def append(self, records: list[CallRecord]) -> None:
        """Add records to this process's spool file; raises ``OSError`` when the disk does."""
        if not records:
            return
        lines = self._lines(records)
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            path = self._own_file()
            with path.open("a", encoding="utf-8") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                if not _same_file(f, path):
                    continue  # claimed by a replay between our open and our lock
                f.write(lines)
                f.flush()
                self.dirty = True
                return

    def rescue(self, records: list[CallRecord]) -> None:
        """Write records to a new file of their own, taking no lock another thread of this
        process may hold: what a signal handler or an exit hook calls. Raises ``OSError``."""
        if not records:
            return
        lines = self._lines(records)
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{self.owner}-{uuid.uuid4().hex[:12]}"
        part = self.directory / f"{name}.part"
        with part.open("w", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        part.rename(self.directory / f"{name}.jsonl")  # replays take *.jsonl files only

    def waiting(self) -> bool:
        """True when the directory holds files to replay (of any process)."""
        try:
            with os.scandir(self.directory) as entries:
                return any(e.name.endswith((".jsonl", ".replaying")) for e in entries)
        except OSError:
            return False

    def count(self) -> tuple[int, int]:
        """Records waiting in the directory now: (this process's, other processes'), by the
        owner their file names start with. A file another process holds locked (appending to
        it, or replaying it into the store now) is on its way and not counted. Raises
        ``OSError`` when the directory or a file in it cannot be read (a directory that does
        not exist holds nothing)."""
        mine = others = 0
        try:
            with os.scandir(self.directory) as entries:
                names = [e.name for e in entries if e.name.endswith((".jsonl", ".replaying"))]
        except (FileNotFoundError, NotADirectoryError):
            return 0, 0  # no directory there: nothing can wait in it
        for name in names:
            try:
                f = (self.directory / name).open("rb")
            except FileNotFoundError:
                continue  # sent and deleted meanwhile
            with f:
                try:  # only a test: the lock is let go at once, so a replay is not held up
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    fcntl.flock(f, fcntl.LOCK_UN)
                except BlockingIOError:
                    continue  # held by a process writing it, or sending it to the store
                n = 0
                while chunk := f.read(1 << 16):
                    n += chunk.count(b"\n")
            if _owner(name) == self.owner:
                mine += n
            else:
                others += n
        return mine, others

    def replay(self, send: Callable[[list[CallRecord]], object], batch_size: int) -> int:
        """Send every spooled record in batches, deleting each file once sent.

        Files another process is appending to or replaying are left for later. Returns how
        many records were sent. An exception from ``send`` puts the file back and
        propagates (records already sent are sent again later: the receiver dedupes).
        """
        self.dirty = False
        try:
            with os.scandir(self.directory) as entries:
                names = sorted(
                    (e.name for e in entries if e.name.endswith((".jsonl", ".replaying"))),
                    key=lambda n: _mtime(self.directory / n),
                )
        except OSError:
            return 0
        sent = 0
        for name in names:
            claim = self._claim(self.directory / name)
            if claim is None:
                continue
            f, claimed = claim
            with f:
                try:
                    for batch in _batches(self._read(claimed), batch_size):
                        send(batch)
                        sent += len(batch)
                except BaseException:
                    # Back under the process that spooled it (count() tells the runs
                    # apart by it), in a new file: that process may append again.
                    back = self.directory / f"{_owner(name)}-{uuid.uuid4().hex[:12]}.jsonl"
                    with contextlib.suppress(OSError):
                        claimed.rename(back)
                    self.dirty = True
                    raise
                claimed.unlink(missing_ok=True)
        return sent

    def _claim(self, path: Path) -> tuple[IO[bytes], Path] | None:
        """Lock and rename ``path``; None when it is gone or another process holds it."""
        try:
            f = path.open("rb")
        except OSError:
            return None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not _same_file(f, path):
                raise BlockingIOError  # renamed by another claim meanwhile
            stem = path.name.split(".", 1)[0]
            claimed = path.with_name(f"{stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.replaying")
            path.rename(claimed)
        except OSError:
            f.close()
            return None
        return f, claimed

    def _read(self, path: Path) -> Iterator[CallRecord]:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    yield decode(line)
                except CorruptRecordError as e:
                    # A torn last line after a crash, or a damaged file: skip, keep the rest.
                    self.corrupt_lines += 1
                    log.warning("cascade.spool_corrupt_line", file=str(path), error=str(e))


def _owner(name: str) -> str:
    """The owner a spool file's name starts with (``pid-token``)."""
    return "-".join(name.split(".", 1)[0].split("-", 2)[:2])


def _same_file(f: IO[str] | IO[bytes], path: Path) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


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
