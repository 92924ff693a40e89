"""A local OpenAI-compatible server that answers from recorded model outputs.

``ReplayServer`` is a ``ScriptedServer`` whose responder looks each chat request up in a
recording (one dict per query, in the shape of ``../shared/data/recorded/*.jsonl``: the
prompts, and per model the ``answer``, ``raw_confidence``, ``tokens_in``/``tokens_out``).
It lets the whole cascade (drivers, engine, validators, pricing) run on real outputs of
real models without calling any API.

- The query is found by its prompts: the system message (if any) and the first user
  message. When two queries share their prompts, the request's ``user`` field may name one
  as ``"<dataset>/<split>/<idx>"``; otherwise the first recorded wins.
- An answer call gets the asked model's recorded answer and token counts; for datasets
  whose confidence is the answer token's log-probability (``ModelIntrinsicLogProb``), the
  answer token carries ``raw_confidence`` as its logprob when logprobs are asked for.
- A follow-up call (the conversation holds the prompt, an assistant turn, then a user
  question) is a self-verification for ``AskModelConfidence`` datasets: it is answered
  with the token ``Y`` whose logprob is the recorded ``raw_confidence``, ``N`` with
  ``log(1 - p)`` among the alternatives, 1 completion token and ``tokens_in + tokens_out +
  20`` prompt tokens. A re-ask (the engine's "did not pass these checks" turn) gets the
  recorded answer again, since a recording holds one answer per model.
- A judge call (``agreement: {comparator: judge}``, recognised by its prompt) is answered
  from the recording's ``correct`` flags of the two answers shown: ``EQUIVALENT`` when both
  are right, or both wrong with the same answer; else the right one is better (``A`` or
  ``B``), ``NEITHER`` when both are wrong in different ways. Its tokens are the prompt's
  characters / 4 and one completion token.
- An unknown query or model gets HTTP 400 with a message saying what was not found.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._engine import REASK
from ..compare import AgreementSpec, normalized
from ..judge import JudgePrompt, parse_judge_prompt
from .scripted import Reply, ScriptedServer

__all__ = ["ReplayServer", "load_recorded", "load_routellm", "record_tag", "request_of"]

_FLOOR = -1e4  # stands for -inf, which JSON cannot carry: exp(-1e4) == 0.0
_REASK_START = REASK.split("\n", 1)[0]
_VERIFY_EXTRA_TOKENS = 20  # the verification question's own tokens, roughly
ROUTELLM_CHEAP = "mistralai/Mixtral-8x7B-Instruct-v0.1"
ROUTELLM_STRONG = "gpt-4-1106-preview"


def record_tag(record: Mapping[str, Any]) -> str:
    """The name of one recorded query, ``<dataset>/<split>/<idx>`` (for the ``user`` field)."""
    return f"{record.get('dataset')}/{record.get('split')}/{record.get('idx')}"


def request_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """One recorded query as a request line (``cascade batch``, ``cascade eval`` without the
    reference): its id, its system and user messages, and its tag in the ``user`` field."""
    messages = [{"role": "user", "content": record["user_prompt"]}]
    if record.get("system_prompt"):
        messages.insert(0, {"role": "system", "content": record["system_prompt"]})
    tag = record_tag(record)
    return {"id": tag, "messages": messages, "params": {"user": tag}}


def load_recorded(*paths: str | Path) -> list[dict[str, Any]]:
    """Read recorded queries from JSONL files (or from every ``*.jsonl`` of a directory).
    Raises ``ValueError`` naming the file, line and field of a line that is not one."""
    out: list[dict[str, Any]] = []
    for p in map(Path, paths):
        files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
        if not files:
            raise ValueError(f"{p}: no *.jsonl recordings in this directory")
        for f in files:
            with f.open(encoding="utf-8") as lines:
                for no, line in enumerate(lines, 1):
                    if line.strip():
                        out.append(_recorded(line, f"{f}:{no}"))
    return out


def _recorded(line: str, where: str) -> dict[str, Any]:
    """One recorded query, checked for what replaying it reads."""
    try:
        row = json.loads(line)
    except ValueError as e:
        raise ValueError(f"{where}: not JSON ({e})") from None
    if not isinstance(row, dict):
        kind = type(row).__name__
        raise ValueError(f"{where}: need a recorded query (a JSON object), got {kind}")
    if not isinstance(row.get("user_prompt"), str):
        raise ValueError(f"{where}: user_prompt: need the query's user message (a string)")
    models = row.get("models")
    if not isinstance(models, dict) or not models:
        raise ValueError(f"{where}: models: need an object of model name -> recorded output")
    for name, o in models.items():
        if not isinstance(o, dict) or not isinstance(o.get("answer"), str):
            raise ValueError(f"{where}: models.{name}.answer: need the recorded answer, a string")
        for field in ("tokens_in", "tokens_out"):
            n = o.get(field)
            if isinstance(n, bool) or not isinstance(n, (int, float)) or not 0 <= n < math.inf:
                raise ValueError(f"{where}: models.{name}.{field}: need a number of tokens >= 0")
    return row


def load_routellm(directory: str | Path) -> list[dict[str, Any]]:
    """RouteLLM's GSM8K responses (Mixtral-8x7B vs GPT-4) as recorded queries.

    Leaves out the prompts of ``gsm8k_contaminated_prompts.jsonl``. The CSV has no token
    counts: they are estimated as characters / 4; there is no confidence signal
    (``conf_signal`` None, ``raw_confidence`` None) and no cost.
    """
    d = Path(directory)
    with (d / "gsm8k_contaminated_prompts.jsonl").open(encoding="utf-8") as f:
        skip = {json.loads(line)["eval_prompt"] for line in f if line.strip()}
    out: list[dict[str, Any]] = []
    with (d / "gsm8k_responses.csv").open(encoding="utf-8", newline="") as f:
        for idx, row in enumerate(csv.DictReader(f)):
            prompt = row["prompt"]
            if prompt in skip:
                continue
            models = {
                m: {
                    "answer": row[f"{m}_response"].strip(),
                    "raw_confidence": None,
                    "correct": row[m] == "True",
                    "cost_usd": None,
                    "tokens_in": max(1, len(prompt) // 4),
                    "tokens_out": max(1, len(row[f"{m}_response"].strip()) // 4),
                }
                for m in (ROUTELLM_CHEAP, ROUTELLM_STRONG)
            }
            out.append(
                {
                    "dataset": "routellm-gsm8k",
                    "split": "test",
                    "idx": idx,
                    "conf_signal": None,
                    "system_prompt": "",
                    "user_prompt": prompt,
                    "gold": None,
                    "models": models,
                }
            )
    return out


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


class ReplayServer(ScriptedServer):
    """A ScriptedServer answering chat requests from recorded model outputs.

    Args:
        records: recorded queries (dicts), or paths of JSONL files / directories of them.
        host, port: where to listen (port 0: a free port).
    Use as a context manager (or ``start()``/``stop()``); ``client()`` / ``async_client()``
    give openai clients pointed at it. ``replayed`` counts the requests answered.
    """

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]] | str | Path | list[str | Path],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        given: list[Any] = [records] if isinstance(records, (str, Path)) else list(records)
        rows: list[Any] = (
            load_recorded(*given) if given and isinstance(given[0], (str, Path)) else given
        )
        self._by_prompt: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._by_tag: dict[str, Mapping[str, Any]] = {}
        for r in rows:
            self._by_prompt.setdefault((r.get("system_prompt") or "", r["user_prompt"]), r)
            self._by_tag[record_tag(r)] = r
        self.replayed = 0
        super().__init__(self.respond, host=host, port=port)

    def find(self, system: str, user: str, tag: str | None = None) -> Mapping[str, Any] | None:
        """The recorded query with these prompts (or with this tag), or None."""
        if tag is not None and tag in self._by_tag:
            return self._by_tag[tag]
        return self._by_prompt.get((system, user))

    def respond(self, body: dict[str, Any]) -> Reply:
        """Answer one chat.completions request body from the recording."""
        self.replayed += 1
        messages = body.get("messages") or []
        system = next((_text(m) for m in messages if m.get("role") in ("system", "developer")), "")
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        if not users:
            return _error("replay: the request has no user message")
        judging = parse_judge_prompt(messages)
        if judging is not None:
            return self._judge(judging, body.get("user"))
        record = self.find(system, _text(messages[users[0]]), body.get("user"))
        if record is None:
            return _error(
                "replay: no recorded query has this system prompt and first user message: "
                f"{_text(messages[users[0]])[:80]!r}"
            )
        model = str(body.get("model"))
        out = record["models"].get(model)
        if out is None:
            return _error(
                f"replay: model {model!r} was not recorded for {record_tag(record)}; "
                f"recorded: {sorted(record['models'])}"
            )
        follow_up = any(m.get("role") == "assistant" for m in messages[users[0] :])
        if follow_up and not _text(messages[users[-1]]).startswith(_REASK_START):
            return self._verify(record, out)
        logprobs = None
        if body.get("logprobs") and record.get("conf_signal") == "ModelIntrinsicLogProb":
            raw = out.get("raw_confidence")
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                return _error(f"replay: {record_tag(record)} records no raw_confidence for {model}")
            lp = _finite(out["raw_confidence"])
            logprobs = [(out["answer"], lp, [(out["answer"], lp)])]
        return Reply(
            content=out["answer"],
            logprobs=logprobs,
            prompt_tokens=int(out["tokens_in"]),
            completion_tokens=int(out["tokens_out"]),
        )

    def _judge(self, prompt: JudgePrompt, tag: str | None) -> Reply:
        record = self.find(prompt.system, prompt.user, tag)
        if record is None:
            return _error(f"replay: the judged request was not recorded: {prompt.user[:80]!r}")
        right = []
        for shown in (prompt.a, prompt.b):
            found = [o for o in record["models"].values() if o["answer"] == shown]
            if not found:
                return _error(f"replay: {record_tag(record)} has no recorded answer {shown!r:.80}")
            if not isinstance(found[0].get("correct"), bool):
                return _error(f"replay: {record_tag(record)} records no 'correct' flag to judge by")
            right.append(found[0]["correct"])
        if right[0] == right[1]:
            same = right[0] or normalized(prompt.a, prompt.b, AgreementSpec())
            word = "EQUIVALENT" if same else "NEITHER"
        else:
            word = "A" if right[0] else "B"
        size = sum(map(len, (prompt.system, prompt.user, prompt.a, prompt.b))) + 400
        return Reply(content=word, prompt_tokens=size // 4, completion_tokens=1)

    @staticmethod
    def _verify(record: Mapping[str, Any], out: Mapping[str, Any]) -> Reply:
        raw = out.get("raw_confidence")
        if record.get("conf_signal") != "AskModelConfidence" or raw is None:
            return _error(f"replay: {record_tag(record)} has no recorded self-verification")
        lp = _finite(raw)
        p = math.exp(lp)
        no = _finite(math.log1p(-p)) if p < 1 else _FLOOR
        return Reply(
            content="Y",
            logprobs=[("Y", lp, [("Y", lp), ("N", no)])],
            prompt_tokens=int(out["tokens_in"]) + int(out["tokens_out"]) + _VERIFY_EXTRA_TOKENS,
            completion_tokens=1,
        )


def _finite(logprob: float) -> float:
    return max(float(logprob), _FLOOR)


def _error(message: str) -> Reply:
    return Reply(status=400, error_message=message)
