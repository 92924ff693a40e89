"""Who may see the dashboard: a key, presented once through a login form, then a cookie.

A browser cannot send ``Authorization`` headers by itself, and a key in a URL ends up in
histories, logs and ``Referer`` headers, so the key is typed into a form posted to
``login``; the answer sets a session cookie that is ``HttpOnly`` (no script reads it),
``SameSite=Strict`` (no other site's page sends it: no cross-site request forgery of the
read-only pages or the logout) and scoped to the dashboard's path. The cookie is not the key:
it is an HMAC of the key, so it opens the dashboard only (a proxy key stays needed for
``/v1``), survives restarts and is the same in every worker process. Programs may send
``Authorization: Bearer <key>`` instead. A login post whose ``Origin`` is another site is
refused (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["COOKIE", "Keys", "login_form"]

COOKIE = "cascade_dashboard"
_CONTEXT = b"cascade dashboard session v1"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


class Keys:
    """The keys that open the dashboard, compared in constant time; empty: no key needed."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._digests = tuple(_digest(k) for k in keys if k)
        self._sessions = tuple(self.session_for(k) for k in keys if k)

    @property
    def required(self) -> bool:
        """True when a key is configured (and so needed)."""
        return bool(self._digests)

    def check(self, presented: str) -> bool:
        """True when ``presented`` is one of the keys (every key compared, no early exit)."""
        given = _digest(presented)
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(given, d)
        return ok

    def session_for(self, key: str) -> str:
        """The cookie value of a session opened with ``key`` (assumed checked)."""
        return hmac.new(key.encode("utf-8", "surrogateescape"), _CONTEXT, "sha256").hexdigest()

    def allows(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        """True when no key is needed, or the request carries a key or a valid session."""
        if not self.required:
            return True
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and key and self.check(key.strip()):
            return True
        session = cookies.get(COOKIE, "")
        ok = False
        for s in self._sessions:
            ok |= hmac.compare_digest(session.encode(), s.encode())
        return bool(session) and ok


def login_form(action: str, next_path: str, *, failed: bool = False) -> str:
    """The login body: one password field posting to ``action`` (values escaped by caller)."""
    note = '<p class="bad">That key is not one of the dashboard keys.</p>' if failed else ""
    return (
        '<div class="login panel"><h1>Dashboard key</h1>'
        '<p class="sub">This dashboard needs a key: a proxy key or one of the '
        "<code>dashboard_keys</code>.</p>"
        f'{note}<form method="post" action="{action}">'
        f'<input type="hidden" name="next" value="{next_path}">'
        '<label for="key">Key</label><input id="key" name="key" type="password" '
        'autocomplete="current-password" required autofocus>'
        '<button type="submit">Open the dashboard</button></form></div>'
    )
