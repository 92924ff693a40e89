"""A finished ChatCompletion replayed as the ``chat.completion.chunk`` objects of a stream.

The cascade can only judge a whole answer, so a "streamed" answer is validated first and then
replayed: a role chunk, the content (a chunk per token with its logprob when the answer has
logprobs, else in pieces of ``piece_chars``), the tool calls, a finish chunk, a usage chunk
when asked for (``stream_options.include_usage``). Used by the proxy (as
server-sent events) and by ``cascade.wrap`` (as chunk objects).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["chunks"]


def chunks(
    completion: Mapping[str, Any], *, include_usage: bool = False, piece_chars: int = 512
) -> Iterator[dict[str, Any]]:
    """The chunk objects of ``completion`` (a ChatCompletion as a dict), in stream order."""
    base = {
        "id": completion.get("id", ""),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    for key in ("system_fingerprint", "service_tier"):
        if completion.get(key) is not None:
            base[key] = completion[key]

    def chunk(choices: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
        return {**base, "choices": choices, **more}

    for choice in completion.get("choices") or ():
        index = choice.get("index", 0)
        message = choice.get("message") or {}

        def delta(d: dict[str, Any], index: int = index) -> dict[str, Any]:
            return chunk([{"index": index, "delta": d, "finish_reason": None}])

        yield delta({"role": message.get("role") or "assistant", "content": ""})
        content = message.get("content") or ""
        tokens = (choice.get("logprobs") or {}).get("content")
        if tokens and "".join(t.get("token", "") for t in tokens) == content:
            for t in tokens:  # a chunk per token, each with its logprob, as the API streams
                yield chunk(
                    [
                        {
                            "index": index,
                            "delta": {"content": t.get("token", "")},
                            "logprobs": {"content": [t], "refusal": None},
                            "finish_reason": None,
                        }
                    ]
                )
        else:
            for start in range(0, len(content), piece_chars):
                piece = delta({"content": content[start : start + piece_chars]})
                if tokens and start == 0:  # not token-aligned: all of them on the first piece
                    piece["choices"][0]["logprobs"] = {"content": tokens, "refusal": None}
                yield piece
        if message.get("refusal"):
            yield delta({"refusal": message["refusal"]})
        for i, call in enumerate(message.get("tool_calls") or ()):
            yield delta(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call.get("id"),
                            "type": call.get("type", "function"),
                            "function": call.get("function") or {},
                        }
                    ]
                }
            )
        yield chunk([{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}])
    if include_usage:
        yield chunk([], usage=completion.get("usage"))
