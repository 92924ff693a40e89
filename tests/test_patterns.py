"""Why calls escalate: re-weighted rates, planted triggers, near-duplicates, suggestions."""

from __future__ import annotations

import random
import tracemalloc
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from cascade.events import Attempt, CallRecord, TaskDay, Verdict
from cascade.report import aggregate, render
from cascade.report.collect import PatternCollector
from cascade.report.patterns import Totals, normalise_reason, patterns_of
from cascade.report.text import duplicate_groups, signature, terms_of
from cascade.stores.counters import day_delta, day_of, merge_day

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from cascade.report.patterns import Patterns

DAY0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z
_ids = iter(range(10**9))


def call(
    *,
    escalated: bool,
    text: str = "user: hello there\n",
    tokens: int = 100,
    language: str = "en",
    validator: str = "confidence",
    reason: str = "confidence 0.75 < 0.8",
    score: float | None = None,
    cheap: float = 0.0001,
    strong: float = 0.001,
    reask: bool = False,
    sampled: bool = True,
    task: str = "support",
) -> CallRecord:
    """One call: the cheap model (and a re-ask) failing ``validator`` before the strong one
    when ``escalated``, else passing with ``score``."""
    n = next(_ids)
    verdict = Verdict(validator, not escalated, reason if escalated else "", score)
    first = Attempt("gpt-4o-mini", "answer", "a", (verdict,), tokens, 10, 0, cheap, 0.3)
    attempts = [first]
    if escalated:
        if reask:
            attempts.append(
                Attempt("gpt-4o-mini", "reask", "a", (verdict,), tokens, 10, 0, cheap, 0.3)
            )
        attempts.append(
            Attempt(
                "gpt-4o", "answer", "b", (Verdict(validator, True),), tokens, 10, 0, strong, 0.9
            )
        )
    return CallRecord(
        id=f"r{n}", time=DAY0 + n % 80_000, task=task, mode="cascade",
        models=tuple(dict.fromkeys(a.model for a in attempts)), model=attempts[-1].model,
        escalated=escalated, ok=True, attempts=tuple(attempts),
        cost_usd=sum(a.cost_usd or 0 for a in attempts), baseline_cost_usd=strong,
        latency_s=0.3, prompt_tokens=tokens, completion_tokens=10,
        features={"prompt_tokens": tokens, "language": language, "has_code": False,
                  "has_json": False, "question": False, "chars": len(text)},
        input=text if (escalated or sampled) else None, sampled=escalated or sampled,
    )  # fmt: skip


def days_of(records: Iterable[CallRecord]) -> list[TaskDay]:
    days: dict[tuple[str, str], TaskDay] = {}
    for r in records:
        key = (r.task, day_of(r.time))
        days[key] = merge_day(days.get(key) or TaskDay(*key), day_delta(r))
    return list(days.values())


def group(n: int, escalations: int, every: int = 10, **kw: object) -> list[CallRecord]:
    """``n`` calls of which the first ``escalations`` escalate; 1 pass in ``every`` sampled."""
    return [
        call(escalated=i < escalations, sampled=(i - escalations) % every == 0, **kw)  # type: ignore[arg-type]
        for i in range(n)
    ]


def patterns(records: list[CallRecord]) -> Patterns:
    report = aggregate(records, days_of(records))
    (task,) = report.tasks
    return task.patterns


# --- re-weighting ----------------------------------------------------------------------------


def test_sampled_passes_are_reweighted_so_rates_are_unbiased() -> None:
    small = group(1000, 100, tokens=100)
    large = group(200, 170, tokens=3000)
    p = patterns(small + large)
    assert p.pass_sampling_rate == pytest.approx(0.1)  # 93 sampled of 930 passing
    rates = {b.label: (b.calls, b.rate) for b in p.size_buckets}
    assert rates["<250"] == pytest.approx((1000, 0.10))
    assert rates["2k-4k"] == pytest.approx((200, 0.85))
    # Unweighted, the sampled records alone would say 100 / 190 and 170 / 173.
    assert set(rates) == {"<250", "2k-4k"}


def test_no_sampled_pass_means_unknown_rates_not_made_up_ones() -> None:
    p = patterns(group(50, 10, every=10**6))  # only the first of 40 passes is sampled
    assert p.pass_sampling_rate == pytest.approx(1 / 40)
    records = [call(escalated=True) for _ in range(5)] + [
        call(escalated=False, sampled=False) for _ in range(20)
    ]
    p = patterns(records)
    assert p.pass_sampling_rate is None
    assert p.size_buckets == ()
    assert p.terms == ()


def test_categorical_features_with_their_rates() -> None:
    p = patterns(group(100, 10, language="en") + group(50, 40, language="de"))
    rates = {(f.feature, f.value): f.rate for f in p.features}
    assert rates[("language", "en")] == pytest.approx(0.10)
    assert rates[("language", "de")] == pytest.approx(0.80)
    assert rates[("has_code", "false")] == pytest.approx(50 / 150)


def test_a_script_fallback_reads_as_a_script_not_a_language() -> None:
    # CLD2 unsure of short inputs says their script ("latin"): not the Latin language.
    records = group(300, 30, language="en") + group(150, 130, language="latin")
    report = aggregate(records, days_of(records))
    table = render(report, "table")
    assert "language=latin script" in table and "language=en" in table
    (feature,) = [s for s in report.tasks[0].patterns.suggestions if s.kind == "feature"]
    assert "inputs in latin script escalate" in feature.message
    assert "language 'latin'" not in feature.message


def test_inputs_without_letters_are_said_to_have_none_not_a_language() -> None:
    records = group(300, 30, language="en") + group(150, 130, language="none")
    report = aggregate(records, days_of(records))
    (feature,) = [s for s in report.tasks[0].patterns.suggestions if s.kind == "feature"]
    assert "inputs with no letters escalate" in feature.message
    assert "language" not in feature.message


# --- planted triggers ------------------------------------------------------------------------

rng = random.Random(7)
POOL = [
    "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3))
    for _ in range(300)
]
# German-looking words: the language trigger, spread over enough words that no one of them
# outweighs the planted topic
GERMAN = [
    f"{a}{b}ung"
    for a in ("be", "ver", "zah", "lie", "rech")
    for b in ("stell", "sich", "lad", "ford", "pack", "hand", "wand", "bind")
]
TEMPLATE = (
    "please cancel my subscription plan {} and send the written confirmation to [EMAIL] "
    "because I am moving abroad next month and will not be able to use the service any "
    "longer so I would like the cancellation to take effect right away with no further "
    "charges on my card thank you very much for your help"
)


def words(k: int, pool: list[str] = POOL, rng: random.Random = rng) -> str:
    return " ".join(rng.choice(pool) for _ in range(k))


def planted() -> list[CallRecord]:
    """A support workload with four planted causes of escalation (the same every time)."""
    rnd = random.Random(11)

    def words(k: int, pool: list[str] = POOL) -> str:
        return " ".join(rnd.choice(pool) for _ in range(k))

    out: list[CallRecord] = []
    # generic short English: 5% escalate, scores just under the 0.8 threshold
    for i in range(800):
        esc = i < 40
        out.append(call(
            escalated=esc, sampled=i % 10 == 0, text=f"user: {words(15)}\n",
            score=0.76 + (i % 4) / 100 if esc else 0.8 + (i % 20) / 100,
        ))  # fmt: skip
    # "refund" questions: 50 of 60 escalate
    for i in range(60):
        esc = i < 50
        out.append(call(
            escalated=esc, sampled=i % 10 == 0,
            text=f"user: {words(6)} my refund {words(6)}\n",
            score=0.77 if esc else 0.85,
        ))  # fmt: skip
    # German: 70 of 100 escalate, mostly because the JSON is missing
    for i in range(100):
        esc = i < 70
        out.append(call(
            escalated=esc, sampled=i % 10 == 0, language="de", text=f"user: {words(12, GERMAN)}\n",
            validator="json_schema", reason="no JSON found" if i % 10 else "expected object at 3",
        ))  # fmt: skip
    # long inputs: 95 of 100 escalate, after a re-ask; the cheap attempts cost more
    for i in range(100):
        esc = i < 95
        out.append(call(
            escalated=esc, sampled=i == 95, tokens=3000, text=f"user: {words(40)}\n",
            cheap=0.0004, strong=0.004, reask=True, score=0.78 if esc else 0.9,
        ))  # fmt: skip
    # near-duplicates among the escalated: one word differs
    for i in range(6):
        out.append(call(escalated=True, text=f"user: {TEMPLATE.format(POOL[i])}\n", score=0.79))
    return out


@pytest.fixture(scope="module")
def support() -> Patterns:
    return patterns(planted())


def test_the_planted_topic_words_are_at_the_top(support: Patterns) -> None:
    refund = support.terms[0]
    assert refund.term == "refund"
    assert refund.z > 1.96
    assert refund.escalated == 50
    assert refund.passing == pytest.approx(805 / 81, rel=0.01)  # one sampled pass, re-weighted
    assert all(t.term not in ("email", "the", "for", "my") for t in support.terms)


def test_terms_per_validator_point_at_its_inputs(support: Patterns) -> None:
    confidence = support.terms_by_validator["confidence"]
    assert confidence[0].term == "refund"
    # The German words escalate with json_schema, but no more than other German inputs do:
    # tested within language strata, they are the language, not words of their own.
    assert "json_schema" not in support.terms_by_validator
    assert not set(GERMAN) & {m for t in support.terms for m in t.members}


def test_long_inputs_stand_out_by_size(support: Patterns) -> None:
    rates = {b.label: b.rate for b in support.size_buckets}
    assert rates["2k-4k"] > 0.9
    assert rates["<250"] < 0.25


def test_reasons_are_normalised_and_counted(support: Patterns) -> None:
    by = {(v, r.reason): r for v, r in support.reasons}
    assert by[("json_schema", "no JSON found")].calls == 63
    assert by[("json_schema", "expected object at #")].example == "expected object at 3"
    assert by[("confidence", "confidence # < #")].calls == 40 + 50 + 95 + 6


def test_near_duplicates_are_grouped(support: Patterns) -> None:
    dup = support.duplicates[0]
    assert dup.size == 6
    assert "cancel my subscription" in dup.example


def test_suggestions_follow_the_planted_causes(support: Patterns) -> None:
    kinds = {s.kind: s for s in support.suggestions}
    size = kinds["route_by_size"]
    # Every cut from 250 tokens on holds the same 100 long inputs: the highest is named. One
    # stored pass of five leaves the rate between 46% and 100% at the level the selection
    # needs, so the report does not claim routing pays (it would above 50%).
    assert "inputs of 2,000 prompt tokens or more escalate 46\u2013100% of the time" in size.message
    assert "give the cheap model guidance" in size.message
    assert size.projected_savings_usd_per_1k_calls is None
    assert size.evidence["inputs"] == pytest.approx(95 + 805 / 81, rel=1e-3)

    dominant = kinds["dominant_reason"]
    assert "json_schema" in dominant.message
    assert "no JSON found" in dominant.message
    assert "response_format" in dominant.message

    feature = kinds["feature"]
    assert "language 'de'" in feature.message
    assert "30\u201399% of the time (100 inputs" in feature.message  # 3 stored passes of 30
    assert feature.evidence["escalation_rate"] == pytest.approx(0.70, abs=0.01)

    topic = kinds["topic"]
    assert "'refund'" in topic.message

    threshold = kinds["lower_threshold"]
    assert threshold.evidence["validator"] == "confidence"
    assert threshold.evidence["threshold"] == pytest.approx(0.8)
    saved = [s.projected_savings_usd_per_1k_calls or 0 for s in support.suggestions]
    assert saved == sorted(saved, reverse=True)


def test_a_cheap_model_that_rarely_succeeds_is_called_out() -> None:
    p = patterns(group(100, 70, every=1))
    (s,) = [s for s in p.suggestions if s.kind == "use_strong_model"]
    assert "escalation rate 70%" in s.message
    # cost 70 * 0.0011 + 30 * 0.0001 = 0.08 against 0.1: calling gpt-4o directly costs more
    assert s.projected_savings_usd_per_1k_calls == pytest.approx((0.08 - 0.1) * 10)
    assert "costs $0.2000 more per 1,000 calls" in s.message


def test_nothing_is_suggested_without_enough_evidence() -> None:
    records = [
        call(escalated=i < 4, reason=f"reason {i}", text=f"user: {words(10)}\n") for i in range(60)
    ]
    p = patterns(records)
    assert p.suggestions == ()
    assert p.terms == ()  # no term reaches the minimum count in 4 escalated inputs


# --- building blocks -------------------------------------------------------------------------


def test_normalise_reason() -> None:
    assert normalise_reason("confidence 0.62 < 0.8") == normalise_reason("confidence 0.55 < 0.8")
    assert normalise_reason("  1,250 items, 3 errors ") == "# items, # errors"


def test_terms_skip_masks_stop_words_system_prompts_and_numbers() -> None:
    text = "system: Extract the invoice\nuser: Refund to [EMAIL] for order 42 please\n"
    assert terms_of(text) == {"refund", "order"}


def test_bigrams_join_adjacent_content_words_only() -> None:
    assert terms_of("user: late refund of the late fee\n") == {
        "late", "refund", "fee", "late refund", "late fee",
    }  # fmt: skip


def signed(*texts: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(t, signature(t)) for t in texts]


def test_duplicate_groups_need_three_members() -> None:
    a = TEMPLATE.format("x")
    assert duplicate_groups([signed(a, a)], limit=100) == ()
    (g,) = duplicate_groups([signed(a, words(40), a, words(40)), signed(a)], limit=100)
    assert g.size == 3


def test_signatures_agree_as_much_as_the_texts_overlap() -> None:
    base = words(200)
    edited = base.split()
    edited[100] = "different"
    near = signature(" ".join(edited))
    far = signature(words(200))
    same = [x == y for x, y in zip(signature(base), near, strict=True)]
    assert sum(same) >= 15  # ~97% of shingles shared
    assert sum(x == y for x, y in zip(signature(base), far, strict=True)) <= 2
    # Short texts leave slots empty; the borrowed values still make equal texts equal.
    short = signature("late refund for order")
    assert len(short) == 20
    assert short == signature("Late refund, for order!")
    assert short != signature("late refund for parcel")


def test_hashed_inputs_are_not_read_as_text() -> None:
    records = [call(escalated=True, text="sha256:" + "ab" * 32) for _ in range(20)]
    records += [call(escalated=False, text="sha256:" + "cd" * 32) for _ in range(20)]
    p = patterns(records)
    assert p.terms == ()
    assert p.duplicates == ()


# --- bounded memory --------------------------------------------------------------------------


def stream(n: int) -> Iterator[CallRecord]:
    """``n`` distinct records, made one at a time."""
    for i in range(n):
        yield call(escalated=i % 3 == 0, text=f"user: {words(8)} ticket {POOL[i % 300]}\n")


def test_the_collector_keeps_bounded_samples_over_200k_records() -> None:
    c = PatternCollector(dup_limit=100, max_terms=2000, max_reasons=50)
    biggest = 0
    for i, r in enumerate(stream(200_000)):
        c.add(r)
        if i % 5000 == 0:
            sizes = [len(t) for t in (*c.term_counts.values(), *c.terms_by_validator.values())]
            biggest = max(biggest, *sizes)
            assert len(c.dup_sample) <= 100
    assert c.sampled == 200_000
    assert len(c.dup_sample) == 100
    assert biggest <= 2000
    p = patterns_of([(c, Totals(200_000, 66_667, 0, 0.0, 0.0))])
    assert p.sampled_records == 200_000


def test_aggregate_does_not_keep_the_records() -> None:
    # Without input text (the term tables have their own bound, tested above), what is left
    # is per-record state: 30,000 records kept would take well over 30 MB.
    records = (call(escalated=i % 3 == 0, text=f"x{i}") for i in range(30_000))
    tracemalloc.start()
    try:
        report = aggregate((replace(r, input=None) for r in records), [], dup_limit=200)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.tasks[0].patterns.sampled_records == 30_000
    assert peak < 3_000_000


def test_no_suggestion_to_lower_a_threshold_calibrate_certified() -> None:
    records = planted()
    kinds = {s.kind for s in patterns(records).suggestions}
    assert "lower_threshold" in kinds  # the confidence failures sit just under 0.8
    report = aggregate(records, days_of(records), certified={"support": {"confidence"}})
    assert "lower_threshold" not in {s.kind for s in report.tasks[0].patterns.suggestions}


def test_no_call_the_strong_model_directly_when_observe_mode_says_switch() -> None:
    records = group(100, 70, every=1)
    parts = [(c, t) for c, t in _parts(records)]
    assert "use_strong_model" in {s.kind for s in patterns_of(parts).suggestions}
    switching = patterns_of(parts, observed_action="switch")
    assert "use_strong_model" not in {s.kind for s in switching.suggestions}


def _parts(records: list[CallRecord]) -> list[tuple[PatternCollector, Totals]]:
    c = PatternCollector()
    for r in records:
        c.add(r)
    d = days_of(records)[0]
    return [(c, Totals(d.calls, d.escalations, d.not_ok, d.cost_usd, d.baseline_cost_usd))]


def test_a_lower_threshold_suggestion_shows_a_calibrated_threshold_unrounded() -> None:
    failing = [call(escalated=True, score=0.9999993, reason="confidence 0.9999993 < 0.9999996")]
    records = failing * 30 + [call(escalated=False, score=0.9999996) for _ in range(70)]
    (s,) = [s for s in patterns(records).suggestions if s.kind == "lower_threshold"]
    assert "(about 0.9999996): lowering it to 0.9499996 would avoid them" in s.message
