"""Where call records go: a backend per URL scheme, and ``store_from_url`` to pick one.

``memory://`` (this process), ``sqlite:///abs/path.sqlite3`` or ``sqlite://relative/path``
(a local file, the default), ``redis://`` / ``rediss://`` (shared by many processes),
``redis+cluster://host:port[,host:port...]`` / ``rediss+cluster://`` (a Redis Cluster).
Add a scheme with ``register_store("myscheme", MyStore)``; the factory receives the URL and
the keyword options given to ``store_from_url``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ._base import HourlyStore, Spooling, Store, Waiting
from ._codec import CorruptRecordError
from ._shutdown import handle_sigterm
from .memory import MemoryStore
from .redis import RedisStore, mask_url
from .sqlite import SQLiteStore

__all__ = [
    "CorruptRecordError",
    "HourlyStore",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "Spooling",
    "Store",
    "Waiting",
    "default_sqlite_path",
    "delivery_note",
    "handle_sigterm",
    "register_store",
    "store_from_url",
]

StoreFactory = Callable[..., Store]


def default_sqlite_path() -> Path:
    """``${CASCADE_HOME:-${XDG_DATA_HOME:-~/.local/share}/cascade}/records.sqlite3``."""
    home = os.environ.get("CASCADE_HOME")
    if not home:
        data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        home = os.path.join(data, "cascade")
    return Path(home).expanduser() / "records.sqlite3"


def _sqlite(url: str, **options: Any) -> SQLiteStore:
    parts = urlsplit(url)
    # sqlite:///abs/path -> "/abs/path"; sqlite://rel/path -> "rel/path"; sqlite:rel -> "rel"
    path = unquote(parts.netloc + parts.path)
    if path.startswith("//"):
        path = path[1:]
    return SQLiteStore(path or default_sqlite_path(), url=url, **options)


def _memory(url: str, **options: Any) -> MemoryStore:
    return MemoryStore(url, **options)


_SCHEMES: dict[str, StoreFactory] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": RedisStore,
    "rediss": RedisStore,
    "redis+cluster": RedisStore,
    "rediss+cluster": RedisStore,
}


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Make ``store_from_url`` build ``factory(url, **options)`` for URLs of ``scheme``."""
    _SCHEMES[scheme.lower()] = factory


def store_from_url(url: str | None, **options: Any) -> Store:
    """Open the store a URL names; None or "" is SQLite at ``default_sqlite_path()``.

    Raises ``ValueError`` for an unknown scheme (naming the known ones) or a malformed URL.
    Nothing is opened here: a file that cannot be opened or a server that is down is not an
    error (its records are spooled until the store takes them); reading from it is.
    """
    if not url:
        return SQLiteStore(default_sqlite_path(), **options)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    factory = _SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise ValueError(f"unknown store scheme {scheme!r} in {mask_url(url)!r}; known: {known}")
    return factory(url, **options)


def delivery_note(store: object) -> tuple[str | None, str | None]:
    """(what of this process's records did not reach the store, what else waits in its
    spool), in words, after ``flush`` or ``close``; None for nothing. For commands to say
    whether their records are where they say."""
    if str(getattr(store, "url", "")).startswith("memory://"):
        return None, "memory:// keeps the records only while the command runs"
    if not isinstance(store, Spooling):
        return None, None
    lost = store.dropped
    said = []
    try:
        waiting: Waiting | None = store.waiting()
    except OSError as e:
        waiting = None
        said.append(f"whether records of this run wait in the store's spool is unknown: {e}")
    if waiting is not None and waiting.mine:
        said.append(
            f"{waiting.mine:,} records of this run are not in the store yet: they wait in the "
            f"spool {waiting.directory} (see any warning above), and the next cascade process "
            "that opens this store with the same spool root ($CASCADE_HOME, or ?spool=) "
            "writes them"
        )
    if lost:
        said.append(f"{lost:,} records were lost (see the errors above)")
    others = (
        f"{waiting.others:,} records of other processes wait in the spool {waiting.directory}"
        if waiting is not None and waiting.others
        else None
    )
    return "; ".join(said) or None, others
