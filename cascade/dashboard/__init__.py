"""The dashboard: Overview, Task and Calls pages over a store, as a local web app
(``cascade dashboard``) and at ``/dashboard`` in ``cascade serve``.

The pages (``overview_html``, ``task_html``, ``snapshot_html``) draw the report's JSON
(``cascade.report.report_to_dict``), so their figures are the report's; ``snapshot_html`` is
also ``cascade report --format html``. The app (``create_app``, ``serve``) needs the
``proxy`` extra (starlette, uvicorn), so those names are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .pages import overview_html, snapshot_html, task_html
from .throttle import Throttle

if TYPE_CHECKING:
    from .app import Dashboard, create_app
    from .server import ExposureError, serve

_LAZY = {"Dashboard": "app", "ExposureError": "server", "create_app": "app", "serve": "server"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "Dashboard",
    "ExposureError",
    "Throttle",
    "create_app",
    "overview_html",
    "serve",
    "snapshot_html",
    "task_html",
]
