"""The cascade's decisions, with no I/O.

``run`` is a generator: it yields ``Call`` effects ("ask this model this"), is sent back a
``Completion`` or a ``Failure``, and finally returns the ``Result``. The sync and async
drivers in ``_client`` only perform the calls, so the logic exists once.

For each model, cheapest first: ask; if the provider fails, escalate (or raise for the
statuses a stronger model cannot fix, ``fatal_status``, less ``escalate_status`` on the rungs
below the strongest); otherwise judge the answer. Validators with a
``clean`` hook judge the raw answer and then strip what they asked for; the others judge
the cleaned answer; validators that need a follow-up call (self-verification) run last
and only when everything else passed, so no money is spent verifying a rejected answer;
they are not run on the strongest model's answers, which nothing could replace.
A failed verdict re-asks the same model ``retries`` times, quoting the reasons, then
escalates. ``max_attempts`` and ``max_cost_usd`` stop the climb early.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from .compare import agree
from .events import (
    Attempt,
    Call,
    Completion,
    Failure,
    Judgement,
    Observation,
    Purpose,
    Reply,
    Request,
    Result,
    Verdict,
    failed_lines,
)
from .exceptions import EscalationExhausted, ProviderError
from .judge.ask import ask
from .pricing import usd
from .routing import start_index
from .validators import name_of

if TYPE_CHECKING:
    from .policy import Policy


Flow = Generator[Call, Reply, Result]

_WORSE = ("strong_better", "different")  # verdicts that the cheap answer would lose quality
REASK = (
    "Your previous answer did not pass these checks:\n{reasons}\n"
    "Answer the original request again, fixing these problems."
)


@dataclass(slots=True)
class Outcome:
    """What climbing a ladder of models produced, before it becomes a Result."""

    attempts: list[Attempt]
    costs: list[Decimal | None]
    accepted: tuple[Completion, tuple[Verdict, ...]] | None = None
    last: tuple[Completion, tuple[Verdict, ...]] | None = None
    why: str = "every model failed validation or errored"
    failure: Failure | None = None  # the last provider error


def prepare(policy: Policy, request: Request) -> Request:
    """The request as the policy's validators want it sent (logprobs, instructions)."""
    for hook in policy.preparers:
        request = hook(request)
    return request


def ladder(policy: Policy) -> tuple[str, ...]:
    """The models a call climbs in the policy's mode."""
    mode = policy.spec.mode
    if mode == "cascade":
        return policy.models
    return policy.models[:1] if mode == "cheap" else policy.models[-1:]


def run(policy: Policy, request: Request) -> Flow:
    """Answer ``request`` as the policy's mode says. See the module docstring.

    In ``observe`` mode this is the strongest model's answer; ``shadow`` is the cheap
    model's run beside it and ``observation`` compares the two. In ``cascade`` mode a
    ``start_at`` rule may send the request straight to a stronger rung (``cascade.routing``).
    """
    models, rule, p = ladder(policy), None, None
    if policy.spec.start_at and policy.spec.mode == "cascade":
        at, rule, p = start_index(policy.spec.start_at, models, request)
        models = models[at:]
    out = yield from climb(policy, prepare(policy, request), models)
    if out.accepted is not None:
        result = _result(policy, out.attempts, out.costs, *out.accepted, ok=True)
    else:
        result = _exhausted(policy, out)
    if rule is None:
        return result
    escalated = any(a.model != models[0] for a in result.attempts)
    return replace(result, start_rule=rule, start_p=p, escalated=escalated)


def climb(
    policy: Policy, request: Request, models: tuple[str, ...]
) -> Generator[Call, Reply, Outcome]:
    """Ask each model in turn until one's answer passes every validator."""
    out = Outcome([], [])
    answers = 0
    max_attempts = policy.spec.max_attempts
    max_cost = policy.spec.max_cost_usd
    endpoints = policy.endpoints
    for model in models:
        endpoint = endpoints.get(model) if endpoints else None
        ask = request
        for k in range(policy.spec.retries + 1):
            if (max_attempts is not None and answers >= max_attempts) or (
                max_cost is not None and answers and _spent(out.costs) >= max_cost
            ):
                out.why = "attempt or cost limit reached"
                return out
            purpose: Purpose = "answer" if k == 0 else "reask"
            reply = yield Call(model, ask, purpose, endpoint)
            answers += 1
            if isinstance(reply, Failure):
                # Below the strongest, escalate_status goes on up: the strongest model is
                # the one the request was written for, and its refusal is the caller's.
                fatal = policy.fatal_status if model == policy.strongest else policy.fatal_below
                if reply.status in fatal:
                    raise ProviderError(
                        f"{policy.task}: {model} refused the request: {reply.reason}",
                        model=model,
                        status=reply.status,
                    ) from reply.exception
                failed = Attempt.failed(reply, purpose)
                out.attempts.append(failed)
                out.costs.append(None if failed.cost_usd is None else Decimal(0))
                out.failure = reply
                break  # a provider fault is not the answer's fault: no re-ask, escalate
            completion, verdicts, extra = yield from _judge(
                policy, reply, verify=model != policy.strongest
            )
            cost = _cost(policy, model, completion)
            out.attempts.append(Attempt.answered(completion, purpose, verdicts, usd(cost)))
            out.costs.append(cost)
            for verify in extra:
                vcost = _cost(policy, model, verify)
                out.attempts.append(Attempt.answered(verify, "verify", (), usd(vcost)))
                out.costs.append(vcost)
            if all(v.passed for v in verdicts):
                out.accepted = (completion, verdicts)
                return out
            out.last = (completion, verdicts)
            if k < policy.spec.retries:
                ask = _reask(request, completion, verdicts)
    return out


def shadow(policy: Policy, request: Request) -> Generator[Call, Reply, Outcome]:
    """Observe mode: the cheap rung exactly as the cascade would run it, never raising."""
    try:
        return (yield from climb(policy, prepare(policy, request), policy.models[:1]))
    except ProviderError as e:
        return Outcome(
            [Attempt.failed(Failure(e.model, "client_error", str(e), e.status), "answer")],
            [Decimal(0)],
            why=str(e),
        )


def observation(
    policy: Policy, request: Request, strong: Result, cheap: Outcome
) -> Generator[Call, Reply, tuple[Result, Observation]]:
    """Combine the answer the caller got with the shadow run: the Result to record (both
    models' attempts, any judge call, what was really spent) and the would-be decision for
    the report. Yields the judge's (or the embedder's) call when the policy compares answers
    with one."""
    accepted = cheap.accepted is not None
    judged = cheap.accepted or cheap.last
    reasons = tuple(reason for a in cheap.attempts for reason in a.reasons)
    scores = {v.validator: v.score for v in (judged[1] if judged else ()) if v.score is not None}
    cheap_cost = None if any(c is None for c in cheap.costs) else _spent(cheap.costs)
    strong_cost = strong.cost_usd
    # The caller got the strong answer whether or not it passed the validators (a strong
    # model unsure of its own answer is still the answer), so it is the reference either way:
    # leaving those calls out would drop exactly the hard inputs and flatter the cheap model.
    agreed: bool | None = None
    verdict: Judgement | None = None
    judging: list[Attempt] = []
    judge_cost: Decimal | None = Decimal(0)
    if judged is not None and strong.completion is not None:
        spec = policy.spec.agreement
        if policy.judge is None:
            agreed = agree(judged[0].text, strong.output, spec)
        else:
            model = policy.judge.model
            verdict, judging, judge_cost = yield from ask(
                policy.judge, spec, request, judged[0].text, strong.output,
                policy.prices.get(model), policy.endpoints.get(model),
            )  # fmt: skip
            agreed = None if verdict == "unknown" else verdict not in _WORSE
    projected = None
    if cheap_cost is not None and strong_cost is not None:
        projected = usd(cheap_cost if accepted else cheap_cost + Decimal(str(strong_cost)))
    total = None
    if cheap_cost is not None and strong_cost is not None and judge_cost is not None:
        total = usd(cheap_cost + Decimal(str(strong_cost)) + judge_cost)
    combined = Result(
        task=strong.task,
        output=strong.output,
        parsed=strong.parsed,
        model=strong.model,
        escalated=False,
        ok=strong.ok,
        attempts=(*strong.attempts, *cheap.attempts, *judging),
        cost_usd=total,
        baseline_cost_usd=strong.cost_usd,
        completion=strong.completion,
        mode="observe",
    )
    # Whole: the record cuts and masks them as store_outputs says (a cut first could keep
    # half of a secret that lies across it).
    return combined, Observation(
        decision="accept" if accepted else "escalate",
        reasons=reasons,
        scores=scores,
        agree=agreed,
        comparator=policy.spec.agreement.comparator,
        cheap_output=judged[0].text if judged else "",
        strong_output=strong.output,
        cheap_cost_usd=usd(cheap_cost),
        strong_cost_usd=strong_cost,
        projected_cost_usd=projected,
        verdict=verdict,
        judge_cost_usd=None if policy.judge is None else usd(judge_cost),
    )


def _judge(
    policy: Policy, completion: Completion, *, verify: bool
) -> Generator[Call, Reply, tuple[Completion, tuple[Verdict, ...], list[Completion]]]:
    verdicts: list[Verdict] = []
    for cleaner in policy.cleaners:
        verdicts.append(cleaner(completion))
        completion = cleaner.clean(completion)
    verdicts.extend(check(completion) for check in policy.checks)
    extra: list[Completion] = []
    if verify and policy.follow_ups and all(v.passed for v in verdicts):
        for f in policy.follow_ups:
            where = policy.endpoints.get(completion.model)
            reply = yield Call(completion.model, f.follow_up(completion), "verify", where)
            if isinstance(reply, Failure):
                verdicts.append(
                    Verdict(name_of(f), False, f"verification call failed: {reply.reason}")
                )
                continue
            extra.append(reply)
            verdicts.append(f.judge(completion, reply))
    return completion, tuple(verdicts), extra


def _reask(request: Request, completion: Completion, verdicts: tuple[Verdict, ...]) -> Request:
    reasons = "\n".join(f"- {line}" for line in failed_lines(verdicts))
    return request.replace(
        messages=[
            *request.messages,
            {"role": "assistant", "content": completion.text},
            {"role": "user", "content": REASK.format(reasons=reasons)},
        ]
    )


def _cost(policy: Policy, model: str, c: Completion) -> Decimal | None:
    price = policy.prices.get(model)
    if price is None or not c.usage_known:
        return None
    return price.cost(c.prompt_tokens, c.completion_tokens, c.cached_tokens)


def _spent(costs: list[Decimal | None]) -> Decimal:
    return sum((c for c in costs if c is not None), Decimal(0))


def _baseline(policy: Policy, attempts: list[Attempt]) -> Decimal | None:
    """The strongest model's own first answer when it was asked, else an estimate from the
    first answered attempt's tokens at the strongest model's prices."""
    price = policy.prices.get(policy.strongest)
    if price is None:
        return None
    answered = [a for a in attempts if a.error is None and a.purpose != "verify"]
    for a in answered:
        if a.model == policy.strongest:
            return price.cost(a.prompt_tokens, a.completion_tokens, a.cached_tokens)
    if not answered:
        return None
    a = answered[0]
    return price.cost(a.prompt_tokens, a.completion_tokens, a.cached_tokens)


def _result(
    policy: Policy,
    attempts: list[Attempt],
    costs: list[Decimal | None],
    completion: Completion | None,
    verdicts: tuple[Verdict, ...],
    *,
    ok: bool,
) -> Result:
    """The Result of a call; with no ``completion`` (no model answered), the call as the store
    records it: no output, the last model tried."""
    parsed = next((v.parsed for v in verdicts if v.parsed is not None), None)
    total = None if any(c is None for c in costs) else _spent(costs)
    first = ladder(policy)[0]
    if completion is not None:
        output, model, raw = completion.text, completion.model, completion.raw
    else:
        output, model, raw = "", attempts[-1].model if attempts else first, None
    return Result(
        task=policy.task,
        output=output,
        parsed=parsed,
        model=model,
        escalated=any(a.model != first for a in attempts),
        ok=ok,
        attempts=tuple(attempts),
        cost_usd=usd(total),
        baseline_cost_usd=usd(_baseline(policy, attempts)),
        completion=raw,
        mode=policy.spec.mode,
    )


def _exhausted(policy: Policy, out: Outcome) -> Result:
    result = (
        None if out.last is None else _result(policy, out.attempts, out.costs, *out.last, ok=False)
    )
    if result is None or (policy.spec.on_exhausted == "raise" and policy.spec.mode == "cascade"):
        reasons = "; ".join(", ".join(a.reasons) for a in out.attempts)
        raise EscalationExhausted(
            f"{policy.task}: {out.why} ({reasons})",
            attempts=out.attempts,
            result=result,
            unanswered=(
                _result(policy, out.attempts, out.costs, None, (), ok=False)
                if result is None
                else None
            ),
            failure=out.failure if result is None else None,
        )
    return result


__all__ = ["Call", "Flow", "Outcome", "Reply", "climb", "observation", "run", "shadow"]
