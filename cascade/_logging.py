"""Where the ``cascade`` command's logs go. The library itself never configures logging."""

from __future__ import annotations

import logging
import sys

import structlog


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (it may be replaced meanwhile)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(verbose: bool) -> None:
    """The command line is an application, so it decides where logs go: stderr, keeping
    stdout for reports and JSON; per-call events only with ``verbose``."""
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.INFO if verbose else logging.WARNING
        ),
        cache_logger_on_first_use=False,
    )
