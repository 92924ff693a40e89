"""The library's log events, and where the ``cascade`` command sends them.

A library prints nothing unless the application asks for it. Every event goes to the
standard library's logger ``cascade`` (which carries a ``NullHandler``), so with no logging
configured nothing reaches stdout or stderr; ``logging.basicConfig(level=logging.INFO)`` or
any handler on ``cascade`` (or the root) shows them. The event dict is processed by the
application's structlog processors when it configured structlog, else rendered as one
``event=cascade.call key=value ...`` line. Modules get their logger from ``get_logger``
only (a test forbids ``structlog.get_logger`` elsewhere: structlog's own default prints
to stdout).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

NAME = "cascade"

_std = logging.getLogger(NAME)
_std.addHandler(logging.NullHandler())

# Without a structlog configuration of the application: one logfmt line, the event first.
_PLAIN: list[Any] = [
    structlog.processors.format_exc_info,
    structlog.processors.LogfmtRenderer(key_order=["event"], drop_missing=True, bool_as_flag=False),
]


class Logger:
    """What ``get_logger`` returns: structlog's call style (``log.info("event", key=v)``)
    over the standard library logger, checked for its level before any processing."""

    __slots__ = ("_std",)

    def __init__(self, std: logging.Logger) -> None:
        self._std = std

    def _emit(self, level: int, method: str, event: str, kw: dict[str, Any]) -> None:
        if not self._std.isEnabledFor(level):
            return  # the common case with no logging configured: nothing is built
        processors = structlog.get_config()["processors"] if structlog.is_configured() else _PLAIN
        bound = structlog.wrap_logger(
            self._std, processors=processors, wrapper_class=structlog.stdlib.BoundLogger
        )
        getattr(bound, method)(event, **kw)

    def debug(self, event: str, **kw: Any) -> None:
        """Log ``event`` at DEBUG with ``kw`` as its context."""
        self._emit(logging.DEBUG, "debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        """Log ``event`` at INFO with ``kw`` as its context."""
        self._emit(logging.INFO, "info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        """Log ``event`` at WARNING with ``kw`` as its context."""
        self._emit(logging.WARNING, "warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        """Log ``event`` at ERROR with ``kw`` as its context."""
        self._emit(logging.ERROR, "error", event, kw)

    def exception(self, event: str, **kw: Any) -> None:
        """Log ``event`` at ERROR with the exception being handled."""
        kw.setdefault("exc_info", True)
        self._emit(logging.ERROR, "error", event, kw)


def get_logger() -> Logger:
    """The library's logger (standard library logger ``cascade``)."""
    return Logger(_std)


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (it may be replaced meanwhile)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _CommandHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs (found again to be replaced, not doubled)."""


def configure_logging(verbose: bool) -> None:
    """The command line is an application, so it decides where logs go: stderr, keeping
    stdout for reports and JSON; per-call events (INFO) only with ``verbose``."""
    for handler in [h for h in _std.handlers if isinstance(h, _CommandHandler)]:
        _std.removeHandler(handler)
    handler = _CommandHandler(_Stderr())
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
    _std.addHandler(handler)
    _std.setLevel(logging.INFO if verbose else logging.WARNING)
    _std.propagate = False  # the command's own handler; not twice through the root's


def reset_logging() -> None:
    """Undo ``configure_logging`` (tests call ``main`` many times in one process)."""
    for handler in [h for h in _std.handlers if isinstance(h, _CommandHandler)]:
        _std.removeHandler(handler)
    _std.setLevel(logging.NOTSET)
    _std.propagate = True
