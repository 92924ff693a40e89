"""``ScriptedServer``: a local OpenAI-compatible server that answers from scripted replies."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from . import wire
from .embeddings import embeddings_answer

if TYPE_CHECKING:
    import openai


__all__ = ["Reply", "ScriptedServer"]

_CLIP = 80  # characters of the user message quoted in "no scripted reply" errors
# Azure OpenAI's path for a deployment's chat completions (``azure_endpoint=server.url``).
_AZURE_CHAT = re.compile(r"^/openai/deployments/[^/]+/chat/completions$")


@dataclass(frozen=True)
class Reply:
    """One scripted answer (a plain ``str`` anywhere a Reply is taken means its content).

    Args:
        content: the message content (None: no content, as with tool calls).
        tool_calls: each ``{"name": str, "arguments": str}`` (raw JSON text; a dict is
            dumped), with an optional ``"id"``.
        finish_reason: ``"stop"``, ``"length"``, ``"tool_calls"`` or ``"content_filter"``.
        logprobs: per token ``(token, logprob)`` or ``(token, logprob, [(alt, logprob), ...])``;
            None: the content's words at logprob 0. Sent only when the request asks for
            logprobs, and alternatives only up to its ``top_logprobs``, as the API does.
        refusal: the message's refusal text.
        prompt_tokens: None: total characters of the request's message contents / 4 (min 1).
        completion_tokens: None: characters of the content and tool arguments / 4 (min 1).
        cached_tokens: reported as ``usage.prompt_tokens_details.cached_tokens``.
        status: any other than 200 answers with OpenAI's error JSON and this status.
        error_message: the error's message (left at its default, a non-empty ``content`` is
            used instead, so ``Reply("quota exceeded", status=429)`` reads naturally).
        delay_s: seconds to wait before answering (to trigger client timeouts).
        body: a raw response body sent as-is with ``status`` (malformed responses).
        headers: response headers sent with an error ``status`` (``retry-after``...).
    """

    content: str | None = ""
    tool_calls: Sequence[Mapping[str, Any]] = ()
    finish_reason: str = "stop"
    logprobs: Sequence[tuple[Any, ...]] | None = None
    refusal: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    status: int = 200
    error_message: str = wire.DEFAULT_ERROR
    delay_s: float = 0.0
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


ReplyLike = Reply | str
Responder = Callable[[dict[str, Any]], Reply | str | None]


@dataclass(slots=True)
class _Rule:
    model: str | None
    pattern: re.Pattern[str] | None
    reply: Reply | Responder
    times: int | None  # uses left; None: forever


async def _close_at_loop_end(client: openai.AsyncOpenAI) -> None:
    try:
        await asyncio.get_running_loop().create_future()  # wait for the loop's end
    finally:
        await client.close()


def _as_reply(reply: object) -> Reply:
    if isinstance(reply, Reply):
        return reply
    if isinstance(reply, str):
        return Reply(content=reply)
    raise TypeError(f"a scripted reply must be a Reply or a str, not {type(reply).__name__}")


class ScriptedServer:
    """A local OpenAI-compatible HTTP server answering chat completions from a script.

    A request is answered by the first of: the rules added with ``fail()`` and ``script()``
    (in order), the ``responder``, the ``default``. When none answers, it gets HTTP 400
    saying which model and message had no scripted reply.

    Args:
        responder: called with each chat request's JSON (which also holds ``"_path"`` and
            ``"_headers"``); returns a Reply, a str, or None to leave the request unanswered.
            Subclasses can instead override ``reply_for()``.
        default: the reply when no rule and no responder answers.
        host, port: where to listen (port 0: a free port, see ``base_url`` once started).

    Attributes:
        requests: every request received, in order: its JSON body plus ``"_path"`` and
            ``"_headers"`` (lower-case names); a GET has only those two keys.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        default: ReplyLike | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.responder = responder
        self.default = None if default is None else _as_reply(default)
        self.host = host
        self.requests: list[dict[str, Any]] = []
        self._port = port
        self._rules: list[_Rule] = []
        self._models: dict[str, None] = {}  # every model named by a rule, in order
        self._lock = threading.RLock()  # reentrant: a callable reply may add rules
        self._ids = itertools.count(1)
        self._http: wire.HttpServer | None = None
        self._clients: list[openai.OpenAI] = []
        self._closers: set[asyncio.Task[None]] = set()

    # -- scripting ---------------------------------------------------------------------------

    def script(
        self,
        model: str | None = None,
        reply: ReplyLike | Responder = "",
        *,
        match: str | None = None,
        times: int | None = None,
    ) -> Self:
        """Add a rule; rules are tried in the order added.

        Args:
            model: the requests' ``model`` it answers (None: any).
            reply: a Reply, a str (the content), or a callable of the request JSON returning
                one (or None to pass the request on to the next rule).
            match: a regex that must be found (``re.search``) in the last user message.
            times: answer this many requests, then drop the rule (None: forever).
        Returns:
            the server, for chaining.
        """
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        if not callable(reply):
            reply = _as_reply(reply)
        rule = _Rule(model, None if match is None else re.compile(match), reply, times)
        with self._lock:
            self._rules.append(rule)
            if model is not None:
                self._models[model] = None
        return self

    def fail(
        self, model: str, status: int = 500, *, times: int = 1, message: str = "scripted failure"
    ) -> Self:
        """Make the next ``times`` requests to ``model`` fail with ``status``, before any rule.

        Returns:
            the server, for chaining.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        rule = _Rule(model, None, Reply(status=status, error_message=message), times)
        with self._lock:
            self._rules.insert(0, rule)
            self._models[model] = None
        return self

    def reply_for(self, request: dict[str, Any]) -> Reply | None:
        """The reply to one chat request (its JSON), or None when nothing answers it."""
        model = request.get("model")
        text: str | None = None
        with self._lock:
            rules = list(self._rules)
        # Rules are judged outside the lock: a callable reply may be slow (or wait for
        # another request), and requests are served concurrently.
        for rule in rules:
            if rule.model is not None and rule.model != model:
                continue
            if rule.pattern is not None:
                text = wire.last_user_text(request) if text is None else text
                if rule.pattern.search(text) is None:
                    continue
            reply = rule.reply(request) if callable(rule.reply) else rule.reply
            if reply is None or not self._use(rule):
                continue
            return _as_reply(reply)
        # The responder runs outside the lock: it may be slow, and requests are concurrent.
        if self.responder is not None:
            answer = self.responder(request)
            if answer is not None:
                return _as_reply(answer)
        return self.default

    def _use(self, rule: _Rule) -> bool:
        """Count one use of ``rule`` (False: used up by a concurrent request meanwhile)."""
        if rule.times is None:
            return True
        with self._lock:
            if rule.times <= 0:
                return False
            rule.times -= 1
            if rule.times == 0:
                self._rules.remove(rule)
        return True

    def _failure_for(self, model: Any) -> Reply | None:
        """The error an embeddings request to ``model`` gets: the first rule for that model
        whose reply is an error status (``fail()``, or ``script(model, Reply(status=...))``)."""
        with self._lock:
            rules = list(self._rules)
        for rule in rules:
            reply = rule.reply
            if not isinstance(reply, Reply) or rule.model != model or reply.status == 200:
                continue
            if self._use(rule):
                return reply
        return None

    # -- what was asked ----------------------------------------------------------------------

    def calls(self, model: str | None = None) -> list[dict[str, Any]]:
        """The chat completion requests received (all, or those to ``model``), in order."""
        with self._lock:
            seen = list(self.requests)
        return [
            r
            for r in seen
            if r["_path"].split("?", 1)[0].endswith("/chat/completions")
            and (model is None or r.get("model") == model)
        ]

    # -- running -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (valid once started)."""
        if self._http is None:
            raise RuntimeError("the server is not started: call start() or use `with`")
        return self._http.port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (once started): an ``AzureOpenAI`` client's ``azure_endpoint``
        (the server also answers Azure's ``/openai/deployments/NAME/chat/completions``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The SDK's ``base_url`` for this server, ``http://HOST:PORT/v1`` (once started)."""
        return f"{self.url}/v1"

    def start(self) -> Self:
        """Listen and serve from a daemon thread (no-op when started). Returns the server."""
        if self._http is None:
            self._http = wire.HttpServer(self._handle, self.host, self._port)
        return self

    def stop(self) -> None:
        """Stop serving; close every connection and the clients made by ``client()``."""
        if self._http is not None:
            self._http.stop()
            self._http = None
        while self._clients:
            self._clients.pop().close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def client(self, **kwargs: Any) -> openai.OpenAI:
        """An ``openai.OpenAI`` client for this server (no retries; ``kwargs`` override).

        ``stop()`` closes it, so that no socket is left for the garbage collector to warn about.
        """
        import openai  # imported on use: only the clients need the SDK

        client = openai.OpenAI(**{**self._client_options(), **kwargs})
        self._clients.append(client)
        return client

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """An ``openai.AsyncOpenAI`` client for this server (no retries; ``kwargs`` override).

        Made inside a running event loop, it is closed when that loop ends (``asyncio.run``,
        pytest-asyncio); made outside one, close it yourself.
        """
        import openai

        client = openai.AsyncOpenAI(**{**self._client_options(), **kwargs})
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return client
        # The loop is closed before stop() can run, and a client left open warns when collected.
        # Loops end by cancelling their tasks: this one closes the client then.
        task = loop.create_task(_close_at_loop_end(client))
        self._closers.add(task)  # the loop only holds tasks weakly
        task.add_done_callback(self._closers.discard)
        return client

    def _client_options(self) -> dict[str, Any]:
        return {"api_key": "sk-test", "base_url": self.base_url, "max_retries": 0}

    # -- HTTP --------------------------------------------------------------------------------

    def _handle(self, http: wire.HttpRequest) -> wire.HttpResponse:
        try:
            request = json.loads(http.body) if http.body else {}
        except ValueError as e:
            request = f"invalid JSON body: {e}"
        if not isinstance(request, dict):
            self._record({"_path": http.path, "_headers": http.headers})
            return wire.error(400, request if isinstance(request, str) else "not a JSON object")
        request["_path"] = http.path
        request["_headers"] = http.headers
        self._record(request)
        endpoint = http.path.split("?", 1)[0].removeprefix("/v1")
        chat = endpoint == "/chat/completions" or _AZURE_CHAT.match(endpoint) is not None
        if chat and http.method == "POST":
            return self._chat(request)
        if endpoint == "/responses" and http.method == "POST":
            return self._responses(request)
        if endpoint == "/embeddings" and http.method == "POST":
            failed = self._failure_for(request.get("model"))
            return embeddings_answer(request) if failed is None else wire.answer(failed, {}, "")
        if endpoint == "/models" and http.method == "GET":
            with self._lock:
                names = list(self._models)
            return wire.model_list(names)
        return wire.error(404, f"unknown path: {http.method} {http.path}", "unknown_url")

    def _record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def _responses(self, request: dict[str, Any]) -> wire.HttpResponse:
        """A Responses API request, answered by the rules as the chat request of its input
        and instructions would be (upstream state, such as ``previous_response_id``, and
        built-in tools are ignored: the script decides the answer)."""
        from ..responses import ChatRequest, events, to_chat, to_response

        text = {"input": request.get("input"), "instructions": request.get("instructions")}
        translated = to_chat(text)
        chat: dict[str, Any] = {
            "model": request.get("model"),
            "messages": translated.messages if isinstance(translated, ChatRequest) else [],
            "logprobs": "message.output_text.logprobs" in (request.get("include") or ()),
            "top_logprobs": request.get("top_logprobs"),
            "_path": request["_path"],
            "_headers": request["_headers"],
            "_responses": request,
        }
        answer = self._chat(chat)
        if answer.status != 200 or not isinstance(answer.body, bytes):
            return answer
        response = to_response(json.loads(answer.body), request)
        if request.get("stream") is not True:
            return wire.HttpResponse(200, wire.dumps(response))
        stream = (
            b"event: " + e["type"].encode() + b"\ndata: " + wire.dumps(e) + b"\n\n"
            for e in events(response)
        )
        return wire.HttpResponse(200, stream, "text/event-stream")

    def _chat(self, request: dict[str, Any]) -> wire.HttpResponse:
        try:
            reply = self.reply_for(request)
            if reply is None:
                text = wire.last_user_text(request)
                clipped = text if len(text) <= _CLIP else text[:_CLIP] + "..."
                model = request.get("model")
                message = f"no scripted reply for model '{model}' and message '{clipped}'"
                return wire.error(400, message, "no_scripted_reply")
            if reply.delay_s > 0:
                time.sleep(reply.delay_s)  # only this connection's thread waits
            return wire.answer(reply, request, f"test{next(self._ids):06d}")
        except Exception as e:  # a broken script: say so in the answer instead of hanging up
            message = f"the scripted reply raised {type(e).__name__}: {e}"
            return wire.error(500, message, "scripted_reply_error")
