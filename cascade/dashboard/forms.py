"""The dashboard's links and its filter forms (values escaped here: they come from the URL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .layout import e

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["base", "calls_form", "href", "span_form"]


def base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def href(request: Request, path: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{base(request)}/{path}" + (f"?{query}" if query else "")


def span_form(
    request: Request, path: str, span: dict[str, float | None], *, by: bool = False,
    **hidden: str,
) -> str:  # fmt: skip
    q = request.query_params
    keep = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in hidden.items())
    per = {"by": q["by"]} if by and q.get("by") else {}
    quick = " · ".join(
        f'<a href="{e(href(request, path, **hidden, **per, since=s))}">{label}</a>'
        for label, s in (("24 h", "24h"), ("7 days", "7d"), ("30 days", "30d"), ("all", ""))
    )
    choice = ""
    if by:
        now = q.get("by") or "auto"
        options = "".join(
            f'<option value="{g}"{" selected" if g == now else ""}>{label}</option>'
            for g, label in (("auto", "auto (hours up to 3 days)"), ("day", "day"),
                             ("hour", "hour"))
        )  # fmt: skip
        choice = f'<label>per<select name="by">{options}</select></label>'
    return (
        f'<form class="filters" method="get" action="{e(href(request, path))}">{keep}'
        f'<label>since<input name="since" value="{e(q.get("since", ""))}" '
        'placeholder="7d or 2024-05-01"></label>'
        f'<label>until<input name="until" value="{e(q.get("until", ""))}" placeholder="now">'
        f'</label>{choice}<button type="submit">Show</button><span>{quick}</span></form>'
    )


def calls_form(request: Request, q: dict[str, str], validators: list[str]) -> str:
    def select(name: str, options: list[tuple[str, str]]) -> str:
        opts = "".join(
            f'<option value="{e(v)}"{" selected" if q.get(name, "") == v else ""}>{e(label)}'
            "</option>"
            for v, label in options
        )
        return f'<label>{name}<select name="{name}">{opts}</select></label>'

    return (
        f'<form class="filters" method="get" action="{e(href(request, "calls"))}">'
        f'<input type="hidden" name="task" value="{e(q.get("task", ""))}">'
        + select("escalated", [("", "any"), ("yes", "escalated"), ("no", "not escalated")])
        + select("ok", [("", "any"), ("yes", "ok"), ("no", "not ok")])
        + select("validator", [("", "any"), *((v, v) for v in validators)])
        + f'<label>model<input name="model" value="{e(q.get("model", ""))}" '
        'placeholder="any"></label>'
        f'<label>since<input name="since" value="{e(q.get("since", ""))}" placeholder="24h">'
        f'</label><label>until<input name="until" value="{e(q.get("until", ""))}" '
        'placeholder="now"></label><button type="submit">Filter</button></form>'
    )
