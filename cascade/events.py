"""Frozen values that flow through the cascade: requests, completions, verdicts, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .policy import Endpoint

# ``embed``: an embeddings call (``agreement: {comparator: embedding}``), not a chat call.
Purpose = Literal["answer", "reask", "verify", "judge", "embed"]
# What a judge said of the cheap answer against the strong one (``unknown``: it errored or
# answered off-format); ``different`` is the embedding comparator's (similarity below min).
Judgement = Literal[
    "equivalent", "cheap_better", "strong_better", "both_bad", "different", "unknown"
]
JUDGEMENTS: tuple[str, ...] = (
    "equivalent", "cheap_better", "strong_better", "both_bad", "different", "unknown"
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Request:
    """What is sent to one model: the messages and every other ``create()`` argument but ``model``.

    Treat both as read-only; validators that change a request build a new one with ``replace``.
    """

    messages: Sequence[Mapping[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tools(self) -> Sequence[Mapping[str, Any]]:
        tools: Sequence[Mapping[str, Any]] = self.params.get("tools") or ()
        return tools

    @property
    def response_format(self) -> Mapping[str, Any] | None:
        return self.params.get("response_format")

    def replace(
        self,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> Request:
        """A copy with other messages and/or parameters merged over the current ones."""
        return Request(
            messages=self.messages if messages is None else messages,
            params={**self.params, **params} if params else self.params,
        )


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token, its log-probability, and the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` is the raw JSON text it produced."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Completion:
    """One model answer, reduced to what validators and costing need.

    ``text`` is the message content ('' when the model answered only with tool calls);
    ``raw`` is the SDK's ChatCompletion, kept for the caller and never compared. An
    embeddings call (purpose ``embed``) answers with its ``vectors``, one per input, in order.
    """

    model: str
    text: str
    request: Request
    finish_reason: str | None = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None
    refusal: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    usage_known: bool = True
    latency_s: float = 0.0
    raw: Any = field(default=None, compare=False, repr=False)
    vectors: tuple[tuple[float, ...], ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Failure:
    """A call that produced no usable answer: a provider error or a malformed response.

    ``kind`` is one of ``timeout``, ``rate_limited``, ``server_error``, ``connection_error``,
    ``client_error``, ``malformed_response``; ``status`` the HTTP status when there was one.
    """

    model: str
    kind: str
    message: str
    status: int | None = None
    latency_s: float = 0.0
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def reason(self) -> str:
        status = f" {self.status}" if self.status is not None else ""
        return f"{self.kind}{status}: {self.message}"


@dataclass(frozen=True, slots=True)
class Call:
    """Effect: call ``model`` with ``request``; send back a Completion or a Failure.

    ``endpoint`` is where the rung is served (its policy's ``base_url``, ``azure`` or
    ``provider``); None: the transport's default client. A call whose ``purpose`` is ``embed``
    asks ``/embeddings`` for ``request.params["input"]`` (a list of texts).
    """

    model: str
    request: Request
    purpose: Purpose
    endpoint: Endpoint | None = None


Reply = Completion | Failure


@dataclass(frozen=True, slots=True)
class Verdict:
    """A validator's judgement of one completion. Validators return these; they never raise.

    ``score`` is the measured value where there is one (a confidence, a length);
    ``parsed`` the decoded value a schema validator produced (not stored, not compared).
    """

    validator: str
    passed: bool
    reason: str = ""
    score: float | None = None
    parsed: Any = field(default=None, compare=False, repr=False)

    @property
    def line(self) -> str:
        """``validator: reason``, as escalation reasons are shown everywhere."""
        return f"{self.validator}: {self.reason}"


def failed_lines(verdicts: Iterable[Verdict]) -> list[str]:
    """``validator: reason`` of each failed verdict, in order."""
    return [v.line for v in verdicts if not v.passed]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call the cascade made, in order: an answer, a re-ask, or a verification call."""

    model: str
    purpose: Purpose
    output: str
    verdicts: tuple[Verdict, ...]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float | None
    latency_s: float
    error: str | None = None
    finish_reason: str | None = None

    @classmethod
    def answered(
        cls, c: Completion, purpose: Purpose, verdicts: tuple[Verdict, ...], cost: float | None
    ) -> Attempt:
        """The attempt that got completion ``c``, judged by ``verdicts``, costing ``cost``."""
        return cls(
            c.model, purpose, c.text, verdicts, c.prompt_tokens, c.completion_tokens,
            c.cached_tokens, cost, c.latency_s, finish_reason=c.finish_reason,
        )  # fmt: skip

    @classmethod
    def failed(cls, f: Failure, purpose: Purpose) -> Attempt:
        """The attempt that got only failure ``f``; a malformed 200 may be billed: cost None."""
        cost = None if f.kind == "malformed_response" else 0.0
        return cls(f.model, purpose, "", (), 0, 0, 0, cost, f.latency_s, error=f.reason)

    @property
    def passed(self) -> bool:
        """True when the call answered and every validator run on it passed."""
        return self.error is None and all(v.passed for v in self.verdicts)

    @property
    def reasons(self) -> list[str]:
        """Why this attempt was rejected: its provider error, or its failed verdicts."""
        return [self.error] if self.error else failed_lines(self.verdicts)


@dataclass(frozen=True, slots=True)
class Result:
    """What ``cascade.run`` returns.

    ``cost_usd`` sums every attempt (None when a model had no known price);
    ``baseline_cost_usd`` is what the strongest model alone would have cost.
    """

    task: str
    output: str
    parsed: Any
    model: str
    escalated: bool
    ok: bool
    attempts: tuple[Attempt, ...]
    cost_usd: float | None
    baseline_cost_usd: float | None
    completion: Any = field(default=None, repr=False, compare=False)
    mode: str = "cascade"
    start_rule: int | None = None  # the start_at rule that sent it up the ladder, if any
    start_p: float | None = None  # ... when a learned one: its P(escalate) of the request

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why each rung was rejected: ``validator: reason`` or the provider error."""
        return tuple(reason for a in self.attempts for reason in a.reasons)


# Upper bounds, in milliseconds, of the latency histogram kept in the daily counters.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    float("inf"),
)


@dataclass(frozen=True, slots=True)
class Observation:
    """What observe mode learnt from one call: the cheap model's would-be answer beside the
    strong answer the caller got.

    ``decision`` is what the cascade would have done with the cheap answer (``accept`` or
    ``escalate``), ``reasons`` why it would have escalated, ``scores`` the validators'
    scores of the cheap answer, ``agree`` whether the two answers agree by ``comparator``
    (None: unknown, an answer errored). Costs are None where a price is unknown;
    ``projected_cost_usd`` is what the cascade would have spent. With ``agreement:
    {comparator: judge}``, ``verdict`` is the judge's (``equivalent`` without a judge call
    where the cheaper comparator already agreed) and ``judge_cost_usd`` what judging cost;
    ``agree`` is then False only for ``strong_better`` (None for ``unknown``).
    """

    decision: Literal["accept", "escalate"]
    reasons: tuple[str, ...] = ()
    scores: Mapping[str, float] = field(default_factory=dict)
    agree: bool | None = None
    comparator: str = "normalized"
    cheap_output: str = ""
    strong_output: str = ""
    cheap_cost_usd: float | None = None
    strong_cost_usd: float | None = None
    projected_cost_usd: float | None = None
    verdict: Judgement | None = None
    judge_cost_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored form (JSON types only); ``from_dict`` reads it back."""
        return {
            "decision": self.decision,
            "reasons": list(self.reasons),
            "scores": dict(self.scores),
            "agree": self.agree,
            "comparator": self.comparator,
            "cheap_output": self.cheap_output,
            "strong_output": self.strong_output,
            "cheap_cost_usd": self.cheap_cost_usd,
            "strong_cost_usd": self.strong_cost_usd,
            "projected_cost_usd": self.projected_cost_usd,
            "verdict": self.verdict,
            "judge_cost_usd": self.judge_cost_usd,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Observation:
        """Read the stored form. Raises ``ValueError`` or ``TypeError`` naming a bad field."""

        def num(key: str) -> float | None:
            value = data.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"observation field {key!r}: expected a number, got {value!r}")
            return float(value)

        decision = data.get("decision")
        if decision not in ("accept", "escalate"):
            raise ValueError(f"observation field 'decision': {decision!r}")
        agree = data.get("agree")
        if agree is not None and not isinstance(agree, bool):
            raise TypeError(f"observation field 'agree': expected a bool, got {agree!r}")
        scores = data.get("scores") or {}
        if not isinstance(scores, dict):
            raise TypeError(f"observation field 'scores': expected a mapping, got {scores!r}")
        verdict = data.get("verdict")
        if verdict is not None and verdict not in JUDGEMENTS:
            raise ValueError(f"observation field 'verdict': {verdict!r}")
        return cls(
            decision=decision,
            reasons=tuple(str(r) for r in data.get("reasons") or ()),
            scores={str(k): float(v) for k, v in scores.items() if v is not None},
            agree=agree,
            comparator=str(data.get("comparator") or "normalized"),
            cheap_output=str(data.get("cheap_output") or ""),
            strong_output=str(data.get("strong_output") or ""),
            cheap_cost_usd=num("cheap_cost_usd"),
            strong_cost_usd=num("strong_cost_usd"),
            projected_cost_usd=num("projected_cost_usd"),
            verdict=verdict,
            judge_cost_usd=num("judge_cost_usd"),
        )


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What the store keeps of one call (the store schema).

    Every call yields one; ``sampled`` says whether it is kept whole. Escalated or failed
    calls are always sampled; passing ones at the policy's ``sample_passes`` rate. An
    unsampled record only updates the daily counters. ``input`` is the input as the
    policy's ``store_inputs`` says (full text, redacted text, a sha256, or None);
    attempt outputs are truncated to the policy's ``max_output_chars`` and kept only for
    sampled records. ``observation`` is set for observe-mode calls.

    ``inclusion_probability`` is the probability this call had of being kept whole: 1 for
    the always-kept calls, ``sample_passes`` for a passing one, so ``1 / inclusion_probability``
    is how many calls a stored record stands for. None on records stored before it was kept
    (readers then estimate it from the daily counters).
    """

    id: str
    time: float
    task: str
    mode: str
    models: tuple[str, ...]
    model: str
    escalated: bool
    ok: bool
    attempts: tuple[Attempt, ...]
    cost_usd: float | None
    baseline_cost_usd: float | None
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    features: Mapping[str, Any]
    input: str | None
    sampled: bool
    extra: Mapping[str, Any] = field(default_factory=dict)
    observation: Observation | None = None
    inclusion_probability: float | None = None


@dataclass(frozen=True, slots=True)
class TaskDay:
    """Counters of one task on one UTC day, kept for every call whether sampled or not.

    ``failures`` maps a validator name (or ``provider:<kind>``) to how many calls it
    rejected an attempt in; ``latency_ms`` maps each bound of ``LATENCY_BUCKETS_MS``
    (as text, ``inf`` for the last) to the number of calls at or under it. ``uncosted``
    counts the calls whose cost or baseline is unknown (a model without a known price):
    the cost sums leave them out, so they are not the day's cost when it is above 0.
    """

    task: str
    day: str
    calls: int = 0
    escalations: int = 0
    not_ok: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    uncosted: int = 0
    failures: Mapping[str, int] = field(default_factory=dict)
    latency_ms: Mapping[str, int] = field(default_factory=dict)
