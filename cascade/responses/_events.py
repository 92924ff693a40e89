"""A finished Response replayed as the Responses API's server-sent events.

As with chat streams, the cascade judges the whole answer before it is sent, so the events
come at once: ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added``, its content (``response.content_part.added``,
``response.output_text.delta`` in pieces of ``piece_chars``, ``response.output_text.done``,
``response.content_part.done``; or ``response.refusal.delta``/``done``; or
``response.function_call_arguments.delta``/``done``), ``response.output_item.done``, and
last ``response.completed`` (``response.incomplete`` for a truncated answer).
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


def events(response: Mapping[str, Any], *, piece_chars: int = 512) -> Iterator[dict[str, Any]]:
    """The stream events of ``response`` (a Response as a dict), in order."""
    seq = itertools.count()

    def event(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "sequence_number": next(seq), **fields}

    start = {**response, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=start)
    yield event("response.in_progress", response=start)
    for index, item in enumerate(response.get("output") or ()):
        where = {"item_id": item.get("id", ""), "output_index": index}
        if item.get("type") == "message":
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            for c, part in enumerate(item.get("content") or ()):
                yield from _part(event, part, {**where, "content_index": c}, piece_chars)
        elif item.get("type") == "function_call":
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            arguments = item.get("arguments", "")
            if arguments:
                yield event("response.function_call_arguments.delta", **where, delta=arguments)
            yield event(
                "response.function_call_arguments.done",
                **where,
                name=item.get("name", ""),
                arguments=arguments,
            )
        else:
            yield event("response.output_item.added", output_index=index, item=item)
        yield event("response.output_item.done", output_index=index, item=item)
    done = "response.incomplete" if response.get("status") == "incomplete" else "response.completed"
    yield event(done, response=response)


def _part(
    event: Any, part: Mapping[str, Any], where: dict[str, Any], piece_chars: int
) -> Iterator[dict[str, Any]]:
    if part.get("type") == "refusal":
        empty: dict[str, Any] = {"type": "refusal", "refusal": ""}
        yield event("response.content_part.added", **where, part=empty)
        yield event("response.refusal.delta", **where, delta=part.get("refusal", ""))
        yield event("response.refusal.done", **where, refusal=part.get("refusal", ""))
        yield event("response.content_part.done", **where, part=part)
        return
    text = part.get("text", "")
    logprobs = [{k: v for k, v in t.items() if k != "bytes"} for t in part.get("logprobs") or ()]
    for t in logprobs:
        t["top_logprobs"] = [
            {k: v for k, v in a.items() if k != "bytes"} for a in t.get("top_logprobs") or ()
        ]
    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    yield event("response.content_part.added", **where, part=empty)
    pieces = [text[i : i + piece_chars] for i in range(0, len(text), piece_chars)] or [""]
    for i, piece in enumerate(pieces):
        # The tokens' logprobs travel with the first delta: pieces are not token-aligned.
        yield event(
            "response.output_text.delta", **where, delta=piece, logprobs=logprobs if i == 0 else []
        )
    yield event("response.output_text.done", **where, text=text, logprobs=logprobs)
    yield event("response.content_part.done", **where, part=part)


def sse(response: Mapping[str, Any]) -> bytes:
    """The whole event stream of ``response`` as one body of ``event:``/``data:`` records."""
    return b"".join(
        b"event: "
        + e["type"].encode()
        + b"\ndata: "
        + json.dumps(e, separators=(",", ":")).encode()
        + b"\n\n"
        for e in events(response)
    )
