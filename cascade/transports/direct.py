"""``DirectTransport``: the chat request sent with aiohttp, with the SDK client's settings.

``cascade serve`` owns its upstream client and only ever sends one kind of request, so it can
skip what the openai SDK does for every request of every kind: parsing the URL, merging
headers, building option models, and running httpx's client over the transport: most of the
SDK's CPU per call, and half of the proxy's own. ``DirectTransport`` sends the same
request (the body ``create`` would send, the client's base URL, key, organization, project,
default headers and timeout) on one aiohttp session, retries as the SDK does (408, 409, 429,
5xx and connection errors; ``x-should-retry``; ``retry-after`` up to a minute; else
exponential backoff from 0.5 s to 8 s with jitter), and reads the answer with the same
``sdk`` functions as every other call. A request the fast path of ``sdk`` would not take
(arguments that are not plain JSON, a wrapped ``create``) goes through the SDK client, and so
does every sync call (a sync client with the same settings, made on first use).

A call whose rung names an endpoint (``Call.endpoint``: a ``base_url`` or a provider) is sent
the same way on a session of that endpoint's own, made on first use with its key and reused;
an Azure endpoint (its ``api-version`` query and ``api-key`` header) goes through its SDK client.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp

from ..events import Completion, Failure
from . import sdk
from ._base import UpstreamStatusError
from ._timeout import attempt_timeout, timeout_for
from .endpoints import EndpointClients, MissingKeyError, key_failure

if TYPE_CHECKING:
    from collections.abc import Mapping

    import openai

    from .._engine import Call
    from ..policy import Endpoint

_MAX_RETRY_AFTER = 60.0  # seconds: a longer server-directed wait is not retried (as the SDK)


class DirectTransport:
    """A ``Transport`` that sends plain-JSON chat calls directly on aiohttp with ``client``'s
    settings (``cascade serve``'s default upstream); see the module docstring.

    Args:
        client: the openai async client whose settings are used, and which performs the
            calls this path does not reproduce. Closed by ``aclose`` only if ``owns_client``.
    """

    def __init__(self, client: openai.AsyncOpenAI, *, owns_client: bool = False) -> None:
        self._client = client  # for requests that are not plain JSON
        self._owns_client = owns_client
        self._sync: openai.OpenAI | None = None
        # What this path does not reproduce goes through the SDK: a key from a provider (the
        # SDK fetches it per request) and client-level query parameters.
        self._direct = bool(client.api_key) and not client.default_query
        self._url = str(client.base_url).rstrip("/") + "/chat/completions"
        # The environment's HTTP(S)_PROXY / NO_PROXY, as httpx reads them, resolved once (not
        # aiohttp's trust_env, which also reads ~/.netrc on every request).
        url = urlsplit(self._url)
        proxy = None if proxy_bypass(url.hostname or "") else getproxies().get(url.scheme)
        self._proxy = proxy or None
        self._headers: dict[str, str] = {}  # built in the event loop, as the SDK builds them
        # A client left at the SDK's 600 s gets the attempt timeout (CASCADE_TIMEOUT, 60 s).
        self._default_timeout = attempt_timeout()
        self._given_timeout = timeout_for(client, self._default_timeout)
        self._client_timeout: Any = self._given_timeout or client.timeout
        self._timeout = _timeout(self._client_timeout)
        self._retries = client.max_retries
        self._session: aiohttp.ClientSession | None = None  # made in the serving event loop
        # Rungs served elsewhere: their SDK clients, and a DirectTransport (a session) for each.
        self.endpoints = EndpointClients(http_client=_aiohttp_client)
        self._elsewhere: dict[Endpoint, DirectTransport] = {}

    def call(self, call: Call) -> Completion | Failure:
        """A sync call: through a sync SDK client with the async client's settings (or the
        endpoint's own sync client)."""
        if call.endpoint is not None:
            try:
                client = self.endpoints.sync(call.endpoint)
            except MissingKeyError as e:
                return key_failure(call.model, e)
            return sdk.call_sync(client, call, timeout_for(client, self._default_timeout))
        if self._sync is None:
            self._sync = sdk.sync_twin(self._client)
        return sdk.call_sync(self._sync, call, self._given_timeout)

    async def acall(self, call: Call) -> Completion | Failure:
        """Perform ``call`` on the aiohttp session (the SDK client for what it cannot send)."""
        if call.endpoint is not None:
            there = self._elsewhere.get(call.endpoint)
            if there is None:
                try:
                    client = self.endpoints.async_(call.endpoint)
                except MissingKeyError as e:
                    return key_failure(call.model, e)
                there = self._elsewhere.setdefault(call.endpoint, DirectTransport(client))
            return await there.acall(replace(call, endpoint=None))
        post = sdk.post_args(self._client, call) if self._direct else None
        if post is None:
            return await sdk.call_async(self._client, call, self._given_timeout)
        body, options = post
        if not self._headers:
            self._headers = self._default_headers(self._client_timeout)
        url, headers, timeout = self._url, self._headers, self._timeout
        if options:  # request options, as create() applies them
            if "timeout" in options:
                timeout = _timeout(options["timeout"])
                headers = self._default_headers(options["timeout"])
            if options.get("headers"):
                extra = options["headers"]
                replaced = {k.lower() for k in extra}  # header names are case-insensitive
                headers = {k: v for k, v in headers.items() if k.lower() not in replaced}
                headers.update((k, v) for k, v in extra.items() if isinstance(v, str))
            if options.get("params"):
                url += ("&" if "?" in url else "?") + urlencode(options["params"], doseq=True)
            if options.get("extra_json"):
                body = {**body, **options["extra_json"]}
        data = json.dumps(body).encode()
        if self._session is None:
            # Up to 1,000 connections, as the SDK's httpx client.
            connector = aiohttp.TCPConnector(limit=1000)
            self._session = aiohttp.ClientSession(connector=connector)
        start = time.perf_counter()
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            if attempt:
                headers = {**headers, "x-stainless-retry-count": str(attempt)}
            try:
                async with self._session.post(
                    url, data=data, headers=headers, timeout=timeout, proxy=self._proxy
                ) as response:
                    status, answer = response.status, await response.read()
                    response_headers = response.headers
            except Exception as e:  # any send error, as the SDK's APIConnectionError
                if last:
                    if isinstance(e, TimeoutError):  # aiohttp's timeouts are TimeoutErrors
                        return _failure(call, "timeout", "Request timed out.", None, start, e)
                    message = f"Connection error: {e}"
                    return _failure(call, "connection_error", message, None, start, e)
                await asyncio.sleep(_backoff(attempt, None))
                continue
            if 200 <= status < 300:
                raw = sdk.parse(self._client, answer, response_headers.get("x-request-id"))
                return sdk.completion(call, raw, time.perf_counter() - start)
            if not last and _should_retry(status, response_headers):
                await asyncio.sleep(_backoff(attempt, response_headers))
                continue
            return _status_failure(call, status, answer, start, response_headers)
        raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover

    def _default_headers(self, timeout: Any) -> dict[str, str]:
        """The headers the SDK client sends with every request: its defaults (read in the
        event loop, where they name the async library), the key, the retry count and the
        read timeout."""
        headers = {k: v for k, v in self._client.default_headers.items() if isinstance(v, str)}
        headers["Authorization"] = f"Bearer {self._client.api_key}"
        headers["x-stainless-retry-count"] = "0"
        read = getattr(timeout, "read", timeout)
        if read is not None:
            headers["x-stainless-read-timeout"] = str(read)
        return headers

    def close(self) -> None:
        """Close the sync clients, if any were made."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        self.endpoints.close()

    async def aclose(self) -> None:
        """Close the connection pools (and the SDK client, if this transport owns it)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        elsewhere, self._elsewhere = list(self._elsewhere.values()), {}
        for there in elsewhere:
            await there.aclose()
        await self.endpoints.aclose()
        if self._owns_client:
            await self._client.close()
        self.close()


def _aiohttp_client() -> Any:
    """The SDK's aiohttp transport, for the SDK clients of rungs served elsewhere."""
    import openai

    return openai.DefaultAioHttpClient()


def _timeout(value: Any) -> aiohttp.ClientTimeout:
    """The SDK's timeout (seconds, or an httpx Timeout) as aiohttp's."""
    if value is None:
        return aiohttp.ClientTimeout(total=None)
    if isinstance(value, (int, float)):
        return aiohttp.ClientTimeout(total=float(value))
    return aiohttp.ClientTimeout(
        total=None,
        sock_connect=getattr(value, "connect", None),
        sock_read=getattr(value, "read", None),
    )


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait in seconds (``retry-after-ms``, ``retry-after`` as seconds
    or as an HTTP date), or None."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_tz(value)
        return None if when is None else email.utils.mktime_tz(when) - time.time()


def _should_retry(status: int, headers: Mapping[str, str]) -> bool:
    wait = _retry_after(headers)
    if wait is not None and math.isfinite(wait) and wait > _MAX_RETRY_AFTER:
        return False
    told = headers.get("x-should-retry")
    if told in ("true", "false"):
        return told == "true"
    return status in (408, 409, 429) or status >= 500


def _backoff(attempt: int, headers: Mapping[str, str] | None) -> float:
    wait = _retry_after(headers)
    if wait is not None and math.isfinite(wait) and 0 < wait <= _MAX_RETRY_AFTER:
        return wait
    return min(0.5 * 2.0**attempt, 8.0) * (1 - 0.25 * random.random())


def _status_failure(
    call: Call, status: int, answer: bytes, start: float, headers: Mapping[str, str]
) -> Failure:
    """A Failure for an error status, with the message and error object of its JSON body."""
    try:
        data = json.loads(answer)
    except ValueError:
        data = None
    if isinstance(data, dict):
        body: Any = data.get("error", data)
        detail = body.get("message", body) if isinstance(body, dict) else body
        message = f"Error code: {status} - {detail}"
    else:  # not JSON: the text, as the SDK keeps it
        body = answer.decode("utf-8", "replace")
        message = f"Error code: {status}"
    kind = "rate_limited" if status == 429 else "server_error" if status >= 500 else "client_error"
    kept = {k.lower(): v for k, v in headers.items()}
    error = UpstreamStatusError(message, status, body, kept)
    return _failure(call, kind, message, status, start, error)


def _failure(
    call: Call, kind: str, message: str, status: int | None, start: float, e: BaseException
) -> Failure:
    return Failure(call.model, kind, message[:500], status, time.perf_counter() - start, e)


__all__ = ["DirectTransport"]
