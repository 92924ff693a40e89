"""Formatting shared by the renderers: times, money, latencies, clipped and wrapped text."""

from __future__ import annotations

import math
import textwrap
from datetime import UTC, datetime

__all__ = ["WIDTH", "clip", "finite", "iso", "money", "ms", "wrap"]

WIDTH = 80


def iso(ts: float | None) -> str | None:
    """A unix time as ISO 8601 UTC text (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def wrap(text: str, indent: int, hang: int = 2) -> list[str]:
    """``text`` wrapped to WIDTH, indented; continuation lines ``hang`` further in."""
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=" " * indent,
        subsequent_indent=" " * (indent + hang),
        break_on_hyphens=False,
    ) or [""]


def clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def money(x: float) -> str:
    """Dollars with enough decimals for sub-cent costs: two significant digits at least, up to
    eight decimals ('$0.000068', '-$0.00000055'), so a cost never reads as $0.0000."""
    sign, x = ("-" if x < 0 else ""), abs(x)
    if x >= 100:
        return f"{sign}${x:,.2f}"
    places = 4 if x == 0 or x >= 0.001 else min(8, 1 - math.floor(math.log10(x)))
    return f"{sign}${x:,.{places}f}"


def ms(x: float | None) -> str:
    """A latency bucket's upper bound in milliseconds as text: '≤250 ms' (the quantile is at
    most that), '-' for none, '>60,000 ms' past the last bucket."""
    if x is None:
        return "-"
    return f"\u2264{x:,.0f} ms" if math.isfinite(x) else ">60,000 ms"
