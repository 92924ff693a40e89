"""``OpenAITransport``: the engine's calls made with the openai SDK's clients.

The one module that speaks to the openai SDK: a Call in, a Completion or a Failure out.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import openai

from ._answers import NotACompletion, accepted, accepted_result, completion, parse
from ._base import failure
from ._timeout import attempt_timeout, timeout_for
from .embeddings import embed_async, embed_sync
from .endpoints import EndpointClients, MissingKeyError, key_failure

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .._engine import Call
    from ..events import Completion, Failure

# Read from here by the other transports and the client.
__all__ = [
    "NotACompletion",
    "OpenAITransport",
    "accepted",
    "accepted_result",
    "async_twin",
    "call_async",
    "call_sync",
    "completion",
    "failure",
    "parse",
    "post_args",
    "sync_twin",
]


class OpenAITransport:
    """A ``Transport`` over openai SDK clients (the default of ``Cascade``).

    Args:
        client / async_client: the clients to call with; made from the environment
            (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``) on first use when not given. When only
            ``client`` is given, the async client is a twin with its settings.
        owned: close the given clients too. Clients the transport made are always closed by
            ``close``/``aclose``; given ones are left open unless ``owned``.
        endpoint_http_client: makes endpoint async clients' ``http_client``; None: httpx.

    A call whose rung names an endpoint (``Call.endpoint``) goes to that endpoint's clients,
    made once per endpoint by the transport's ``endpoints`` registry and closed with it.
    """

    def __init__(
        self,
        client: openai.OpenAI | None = None,
        async_client: openai.AsyncOpenAI | None = None,
        *,
        owned: bool = False,
        endpoint_http_client: Callable[[], Any] | None = None,
    ) -> None:
        self._client = client
        self._async_client = async_client
        self._owns_client = owned or client is None
        self._owns_async_client = owned or async_client is None
        self._lock = threading.Lock()
        self.endpoints = EndpointClients(http_client=endpoint_http_client)
        self._default_timeout = attempt_timeout()  # a bad CASCADE_TIMEOUT fails here

    @property
    def client(self) -> openai.OpenAI:
        """The sync client (from the environment unless one was given)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    a = self._async_client
                    self._client = openai.OpenAI() if a is None else sync_twin(a)
        return self._client

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        """The async client; a twin of the sync one's settings when only it was given."""
        if self._async_client is None:
            with self._lock:
                if self._async_client is None:
                    c = self._client
                    self._async_client = openai.AsyncOpenAI() if c is None else async_twin(c)
        return self._async_client

    def call(self, call: Call) -> Completion | Failure:
        """Perform ``call`` with the sync client (its endpoint's, if it names one)."""
        if call.endpoint is None:
            client = self.client
        else:
            try:
                client = self.endpoints.sync(call.endpoint)
            except MissingKeyError as e:
                return key_failure(call.model, e)
        return call_sync(client, call, timeout_for(client, self._default_timeout))

    async def acall(self, call: Call) -> Completion | Failure:
        """Perform ``call`` with the async client (its endpoint's, if it names one)."""
        if call.endpoint is None:
            client = self.async_client
        else:
            try:
                client = self.endpoints.async_(call.endpoint)
            except MissingKeyError as e:
                return key_failure(call.model, e)
        return await call_async(client, call, timeout_for(client, self._default_timeout))

    def close(self) -> None:
        """Close the sync client if this transport made it, and the endpoints' clients."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None
        self.endpoints.close()

    async def aclose(self) -> None:
        """Close the async client (and the sync one) if this transport made them, and the
        endpoints' clients."""
        if self._owns_async_client and self._async_client is not None:
            await self._async_client.close()
            self._async_client = None
        await self.endpoints.aclose()
        self.close()


def call_sync(
    client: openai.OpenAI, call: Call, timeout: float | None = None
) -> Completion | Failure:
    """Perform ``call`` with a sync client; provider errors come back as a Failure.
    ``timeout``: seconds per request when the call's parameters set none."""
    if call.purpose == "embed":
        return embed_sync(client, call, timeout)
    start = time.perf_counter()
    post = post_args(client, call, timeout)
    try:
        if post is None:
            raw = client.chat.completions.create(
                model=call.model,
                messages=call.request.messages,  # type: ignore[arg-type]  # checked by make_request
                **_with_timeout(call.request.params, timeout),
            )
        else:
            body, options = post
            response = client.post(
                _PATH, cast_to=_HTTP_RESPONSE, body=body, options=_with_auth(options)
            )
            raw = parse(client, response.content, response.headers.get("x-request-id"))
    except openai.OpenAIError as e:
        return failure(call.model, e, time.perf_counter() - start)
    return completion(call, raw, time.perf_counter() - start)


async def call_async(
    client: openai.AsyncOpenAI, call: Call, timeout: float | None = None
) -> Completion | Failure:
    """Perform ``call`` with an async client; provider errors come back as a Failure.
    ``timeout``: seconds per request when the call's parameters set none."""
    if call.purpose == "embed":
        return await embed_async(client, call, timeout)
    start = time.perf_counter()
    post = post_args(client, call, timeout)
    try:
        if post is None:
            raw = await client.chat.completions.create(
                model=call.model,
                messages=call.request.messages,  # type: ignore[arg-type]  # checked by make_request
                **_with_timeout(call.request.params, timeout),
            )
        else:
            body, options = post
            response = await client.post(
                _PATH, cast_to=_HTTP_RESPONSE, body=body, options=_with_auth(options)
            )
            raw = parse(client, response.content, response.headers.get("x-request-id"))
    except openai.OpenAIError as e:
        return failure(call.model, e, time.perf_counter() - start)
    return completion(call, raw, time.perf_counter() - start)


# The fast path. ``chat.completions.create`` walks every argument against the SDK's TypedDicts
# (``maybe_transform``) and builds the response object field by field in Python; for arguments
# that are plain JSON the walk changes nothing, and pydantic-core validates the response bytes
# several times faster: together a large part of the SDK's own time per call. ``post`` is
# the SDK's documented way to send a request it has no method for: same client, auth, retries,
# timeouts and errors. Anything not plain JSON (a pydantic object in the messages, a
# ``response_format`` class, NOT_GIVEN) goes through ``create`` as before, and so does every
# call when ``create`` has been wrapped since this module was imported (tracing and
# instrumentation libraries patch it to see calls).
_PATH = "/chat/completions"
_SDK_CREATE = (
    openai.resources.chat.completions.Completions.create,
    openai.resources.chat.completions.AsyncCompletions.create,
)
# The HTTP library's response class the SDK hands back for ``cast_to`` (httpx2 in openai 3).
try:
    import httpx2 as _httpx
except ImportError:  # pragma: no cover - openai < 3 uses httpx
    import httpx as _httpx  # type: ignore[no-redef,import-not-found,unused-ignore]
_HTTP_RESPONSE: Any = _httpx.Response
# create()'s request options, by the keyword it takes them as.
_OPTIONS = {
    "extra_headers": "headers",
    "extra_query": "params",
    "extra_body": "extra_json",
    "timeout": "timeout",
}
try:  # openai >= 3: create() asks for bearer auth only; older SDKs have no such option
    from openai._models import FinalRequestOptions

    _HAS_SECURITY = "security" in FinalRequestOptions.model_fields
    _SECURITY: dict[str, Any] = {"security": {"bearer_auth": True}} if _HAS_SECURITY else {}
except (ImportError, AttributeError):  # pragma: no cover - depends on the SDK's layout
    _SECURITY = {}


def _with_auth(options: dict[str, Any]) -> Any:
    """``client.post``'s options: the call's own, and the auth ``create`` asks for."""
    return {**options, **_SECURITY}


def post_args(
    client: openai.OpenAI | openai.AsyncOpenAI, call: Call, timeout: float | None = None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The JSON body ``create`` would send and the request options it would apply (as
    ``client.post`` takes them), or None when the call must go through ``create``: an argument
    is not plain JSON, or ``create`` has been wrapped (to trace calls), or it is no chat call.
    ``timeout`` is the request's timeout unless its parameters set one."""
    if type(client.chat.completions).create not in _SDK_CREATE or call.purpose == "embed":
        return None
    messages = call.request.messages
    if type(messages) is not list or not _plain(messages):
        return None
    body: dict[str, Any] = {"model": call.model, "messages": messages}
    options: dict[str, Any] = {}
    for key, value in call.request.params.items():
        option = _OPTIONS.get(key)
        if option is not None:
            # As create() takes them: None means "none" for headers, query and body, and
            # "no timeout" for the timeout; NOT_GIVEN (or omit) means "not given".
            if (value is None and option != "timeout") or isinstance(value, _UNSET):
                continue
            if option == "extra_json" and not _plain(value):
                return None
            if option == "params" and not _simple_query(value):
                return None  # lists, dicts and booleans: the SDK's own encoding
            options[option] = value
        elif _plain(value):
            body[key] = value
        else:
            return None
    if timeout is not None:
        options.setdefault("timeout", timeout)
    return body, options


def _with_timeout(params: Mapping[str, Any], timeout: float | None) -> Mapping[str, Any]:
    if timeout is None or "timeout" in params:
        return params
    return {**params, "timeout": timeout}


_UNSET = tuple(
    t for t in (getattr(openai, "NotGiven", None), getattr(openai, "Omit", None)) if t is not None
)


def _simple_query(params: Any) -> bool:
    return isinstance(params, dict) and all(
        type(v) is str or type(v) is int or type(v) is float for v in params.values()
    )


def _plain(value: Any) -> bool:
    """Whether ``value`` is made of JSON's own types only (exact types: no subclasses).
    Iterative: a value nested past Python's stack (request data others control) is walked,
    not a ``RecursionError``."""
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:
        return True  # most parameters: no stack to build
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is str or t is int or t is float or t is bool or v is None:
            continue
        if t is dict:
            for k in v:
                if type(k) is not str:
                    return False
            push(v.values())
        elif t is list:
            push(v)
        else:
            return False
    return True


def async_twin(client: openai.OpenAI | openai.AsyncOpenAI) -> openai.AsyncOpenAI:
    """A new AsyncOpenAI with ``client``'s settings and a connection pool of its own."""
    return openai.AsyncOpenAI(
        api_key=client.api_key,
        organization=client.organization,
        project=client.project,
        base_url=client.base_url,
        timeout=client.timeout,
        max_retries=client.max_retries,
    )


def sync_twin(client: openai.OpenAI | openai.AsyncOpenAI) -> openai.OpenAI:
    """A new OpenAI (sync) client with ``client``'s settings."""
    return openai.OpenAI(
        api_key=client.api_key,
        organization=client.organization,
        project=client.project,
        base_url=client.base_url,
        timeout=client.timeout,
        max_retries=client.max_retries,
    )
