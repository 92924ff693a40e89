"""The report as one self-contained HTML file: the dashboard's Overview and Task pages.

``render_html`` draws the report's JSON (``report_to_dict``) with ``cascade.dashboard``'s page
renderers, so the file looks like the dashboard and shows exactly the figures of
``--format json``: inline CSS and SVG charts, no script, nothing fetched. Every string from
records or configuration is escaped by those renderers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...dashboard import snapshot_html
from .json import report_to_dict

if TYPE_CHECKING:
    from ..build import Report

__all__ = ["render_html"]


def render_html(report: Report) -> str:
    """The report as a standalone HTML document (no external resources, no scripts)."""
    return snapshot_html(report_to_dict(report))
