"""The dashboard as an ASGI app: ``create_app(store, keys=...) -> Starlette``.

Routes (under whatever path it is mounted at; ``cascade serve`` mounts it at ``/dashboard``):
``GET /`` Overview, ``GET /task?task=T`` Task, ``GET /calls?task=T&...`` Calls,
``GET|POST /login``, ``POST /logout``. Every page takes ``since``/``until`` (``24h``, ``7d``,
``2024-05-01``, ``2024-05-01T12:00``; UTC); the Overview and Task pages ``by`` too (``auto``,
``day``, ``hour``: the charts' granularity, see ``trend``). Pages are read-only: no GET
changes anything.

Figures are ``report_to_dict(build_report(store, ...))``: the Overview reads the counters only
(``sample=0``), a Task page the newest ``sample`` stored records of its task too, built in the
background (see ``figures``), so no page load waits for a pattern analysis.
"""

from __future__ import annotations

import ipaddress
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import anyio.to_thread
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..exceptions import StoreError
from .auth import COOKIE, Keys, login_form
from .calls import CallFilter, calls_html, find_calls
from .figures import Figures
from .forms import base, calls_form, href, span_form
from .layout import CSP, e, page
from .pages import overview_html, task_html
from .throttle import Throttle
from .trend import GRANULARITIES

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from starlette.requests import Request

    from ..stores import Store

__all__ = ["DEFAULT_SAMPLE", "Dashboard", "client_address", "create_app", "parse_when"]

DEFAULT_SAMPLE = 1000
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class BadQuery(ValueError):
    """A query parameter the page cannot use (the message names it)."""


def parse_when(text: str, *, now: float | None = None) -> float:
    """``30m``/``24h``/``7d``/``2w`` ago, or an ISO date or datetime (naive: UTC), as unix
    seconds; raises ``BadQuery`` otherwise."""
    value = text.strip()
    m = _DURATION.fullmatch(value.lower())
    if m:
        return (time.time() if now is None else now) - float(m[1]) * _SECONDS[m[2]]
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(
            f"{text!r} is neither a duration (24h, 7d) nor a date (2024-05-01)"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class Dashboard:
    """The handlers over one store, with the keys that open them and the cached figures."""

    def __init__(
        self, store: Store, *, keys: Sequence[str] = (), sample: int = DEFAULT_SAMPLE,
        cache_s: float = 5.0, patterns_s: float = 60.0, background: bool = True,
        throttle: Throttle | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.keys = Keys(keys)
        self.throttle = throttle or Throttle()
        self.figures = Figures(
            store, sample=sample, cache_s=cache_s, patterns_s=patterns_s, background=background
        )

    # -- pages ---------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        """Every task together and one row per task."""
        span, by = _span(request), _by(request)
        data = await anyio.to_thread.run_sync(lambda: self.figures.counters(task=None, **span))
        body = span_form(request, "", span, by=True) + overview_html(
            data, task_href=lambda t: href(request, "task", task=t, **_raw_span(request)), by=by
        )
        return self._page(request, "Overview", body)

    async def task(self, request: Request) -> Response:
        """One task's figures, failures, sizes, patterns and observation."""
        name = request.query_params.get("task", "")
        span, by = _span(request), _by(request)
        data, complete = await anyio.to_thread.run_sync(
            lambda: self.figures.with_patterns(task=name, **span)
        )
        found = [t for t in data["tasks"] if t["task"] == name]
        if not found:
            body = f"<h1>No calls for task <code>{e(name)}</code> in this span</h1>"
            return self._page(request, "Task", span_form(request, "task", span) + body, 404)
        calls = href(request, "calls", task=name, **_raw_span(request))
        body = span_form(request, "task", span, by=True, task=name) + task_html(
            data, found[0], calls_href=calls,
            pending=None if complete else self.figures.sample, by=by,
        )  # fmt: skip
        return self._page(request, f"Task {name}", body)

    async def calls(self, request: Request) -> Response:
        """A task's stored records, filtered, newest first."""
        q = request.query_params
        name = q.get("task", "")
        span = _span(request)
        where = CallFilter(
            task=name, escalated=_flag(q.get("escalated")), ok=_flag(q.get("ok")),
            validator=q.get("validator") or None, model=q.get("model") or None, **span,
        )  # fmt: skip
        before = _cursor(q.get("before"))
        found = await anyio.to_thread.run_sync(lambda: find_calls(self.store, where, before=before))
        data = await anyio.to_thread.run_sync(lambda: self.figures.counters(task=name, **span))
        validators = next((list(t["validators"]) for t in data["tasks"] if t["task"] == name), [])
        params = {k: v for k, v in q.items() if k != "before"}
        body = calls_html(
            found, title=f"Calls of {name}",
            form=calls_form(request, params, validators),
            next_href=lambda c: href(request, "calls", **params, before=f"{c[0]!r}:{c[1]}"),
        )  # fmt: skip
        return self._page(request, f"Calls {name}", body)

    async def login(self, request: Request) -> Response:
        """GET: the form; POST: check the key, set the session cookie, go on to ``next``."""
        next_path = _local(request.query_params.get("next"), request)
        if request.method == "GET":
            return self._html(
                request, "Log in", login_form(e(href(request, "login")), e(next_path))
            )
        if not _same_origin(request):
            return self._html(request, "Log in", "<h1>Cross-site login refused</h1>", 403)
        client = client_address(request)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            return self._too_many(request, wait)
        body = await request.body()
        form = parse_qs(body[:8192].decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0]
        next_path = _local((form.get("next") or [""])[0], request)
        if not self.keys.required or not self.keys.check(key):
            self.throttle.failed(client)
            failed = login_form(e(href(request, "login")), e(next_path), failed=True)
            return self._html(request, "Log in", failed, 401)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            COOKIE, self.keys.session_for(key), httponly=True, samesite="strict",
            secure=request.url.scheme == "https", path=base(request) + "/",
        )  # fmt: skip
        return response

    async def logout(self, request: Request) -> Response:
        """Forget the session cookie."""
        response = RedirectResponse(href(request, "login"), status_code=303)
        response.delete_cookie(COOKIE, path=base(request) + "/")
        return response

    # -- shared --------------------------------------------------------------------------

    def guard(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """``handler`` behind the key check, with bad queries and store errors as pages."""

        async def guarded(request: Request) -> Response:
            sent_key = bool(request.headers.get("authorization")) and self.keys.required
            if sent_key:  # a key is tried: refused unchecked while its client is throttled
                wait = self.throttle.retry_after(client_address(request))
                if wait is not None:
                    return self._too_many(request, wait)
            if not self.keys.allows(request.headers, request.cookies):
                if sent_key:
                    self.throttle.failed(client_address(request))
                    return self._html(request, "Refused", "<h1>Wrong key</h1>", 401)
                target = href(request, "login", next=request.url.path + (
                    "?" + request.url.query if request.url.query else ""))  # fmt: skip
                return _secure(RedirectResponse(target, status_code=303))
            try:
                response: Response = await handler(request)
            except BadQuery as error:
                return self._html(request, "Bad request", f"<h1>{e(error)}</h1>", 400)
            except StoreError as error:
                return self._html(request, "Store error", f"<h1>{e(error)}</h1>", 503)
            return response

        return guarded

    def _page(self, request: Request, title: str, body: str, status: int = 200) -> Response:
        nav = [("Overview", href(request, "", **_raw_span(request)))]
        task = request.query_params.get("task")
        if task:
            nav += [
                (f"Task {task}", href(request, "task", task=task, **_raw_span(request))),
                ("Calls", href(request, "calls", task=task, **_raw_span(request))),
            ]
        logout = ""
        if self.keys.required:
            logout = (f'<form method="post" action="{e(href(request, "logout"))}">'
                      '<button type="submit">Log out</button></form>')  # fmt: skip
        return _secure(HTMLResponse(page(title, body, nav=nav, extra=logout), status))

    def _html(self, request: Request, title: str, body: str, status: int = 200) -> Response:
        return _secure(HTMLResponse(page(title, body), status))

    def _too_many(self, request: Request, wait: int) -> Response:
        body = (
            f"<h1>Too many wrong keys</h1><p>{self.throttle.limit} wrong keys came from your "
            f"address within {self.throttle.window_s:g} s; try again in {wait} s.</p>"
        )
        response = self._html(request, "Too many wrong keys", body, 429)
        response.headers["retry-after"] = str(wait)
        return response


def client_address(request: Request) -> str:
    """Who a key check is counted against: the client's address, an IPv6 one by its /64
    (one host holds a whole /64), ``unknown`` when the server does not say."""
    host = request.client.host if request.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _secure(response: Response) -> Response:
    response.headers.update(_HEADERS)
    return response


def _local(target: str | None, request: Request) -> str:
    """``target`` when it is a path of this dashboard, else its Overview (no open redirect)."""
    root = base(request) + "/"
    if target and target.startswith(root) and not target.startswith("//") and "\\" not in target:
        return target
    return root


def _same_origin(request: Request) -> bool:
    """False for a post another site's page made (its Origin, or Sec-Fetch-Site, says so)."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def _span(request: Request) -> dict[str, float | None]:
    q = request.query_params
    return {
        "since": parse_when(q["since"]) if q.get("since") else None,
        "until": parse_when(q["until"]) if q.get("until") else None,
    }


def _raw_span(request: Request) -> dict[str, str]:
    q = request.query_params
    return {k: q[k] for k in ("since", "until", "by") if q.get(k)}


def _by(request: Request) -> str:
    by = request.query_params.get("by") or "auto"
    if by not in GRANULARITIES:
        raise BadQuery(f"by={by!r}: expected one of {', '.join(GRANULARITIES)}")
    return by


def _flag(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get(value or "")


def _cursor(value: str | None) -> tuple[float, str] | None:
    if not value:
        return None
    t, _, ident = value.partition(":")
    try:
        return float(t), ident
    except ValueError:
        raise BadQuery(f"bad page cursor {value!r}") from None


def create_app(
    store: Store, *, keys: Sequence[str] = (), sample: int = DEFAULT_SAMPLE,
    cache_s: float = 5.0, patterns_s: float = 60.0, background: bool = True,
    throttle: Throttle | None = None,
) -> Starlette:  # fmt: skip
    """The dashboard over ``store`` as an ASGI app.

    Args:
        store: where the records and counters are read (never written).
        keys: keys that open it (empty: open; the caller decides whether that is safe).
        sample: stored records per task a Task page's patterns are drawn from, newest first.
        cache_s: how long a counter report is reused; ``patterns_s``: a report with
            patterns. ``background=False`` builds the patterns during the page load.
        throttle: wrong keys per client address (default ``Throttle()``: 10 a minute,
            then 429 with ``Retry-After``), at the login form and in ``Authorization``.
    Returns a Starlette app whose ``state.dashboard`` is the ``Dashboard``.
    """
    d = Dashboard(
        store, keys=keys, sample=sample, cache_s=cache_s, patterns_s=patterns_s,
        background=background, throttle=throttle,
    )  # fmt: skip
    app = Starlette(
        routes=[
            Route("/", d.guard(d.overview), methods=["GET"]),
            Route("/task", d.guard(d.task), methods=["GET"]),
            Route("/calls", d.guard(d.calls), methods=["GET"]),
            Route("/login", d.login, methods=["GET", "POST"]),
            Route("/logout", d.logout, methods=["POST"]),
        ]
    )
    app.state.dashboard = d
    return app
