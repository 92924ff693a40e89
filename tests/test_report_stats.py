"""The report's statistics on synthetic counts with known truth (deterministic seeds)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from test_patterns import call, days_of

from cascade.evals.exact import upper_bound
from cascade.events import CallRecord
from cascade.report import aggregate
from cascade.report.patterns import Patterns
from cascade.report.stats import benjamini_hochberg, clopper_pearson, cmh, rate_interval


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (40, 71), (99, 100), (500, 5000)])
def test_clopper_pearson_matches_the_binomial_tail(k: int, n: int) -> None:
    low, high = clopper_pearson(k, n, 0.05)
    assert high == pytest.approx(upper_bound(k, n, 0.025), abs=1e-9)
    assert low == pytest.approx(1 - upper_bound(n - k, n, 0.025), abs=1e-9)


@pytest.mark.parametrize("p", [0.05, 0.3, 1.0])
def test_rate_interval_covers_the_truth_under_pass_sampling(p: float) -> None:
    rng = random.Random(7)
    truth, missed, groups = 0.6, 0, 400
    for _ in range(groups):
        escalated = kept = 0
        for _ in range(150):
            if rng.random() < truth:
                escalated += 1
            elif rng.random() < p:
                kept += 1
        low, high = rate_interval(escalated, kept, p)
        missed += not low <= truth <= high
    assert missed / groups <= 0.05  # exact: at most 5% in expectation


def test_a_group_with_no_stored_pass_is_not_read_as_always_escalating() -> None:
    low, high = rate_interval(40, 0, 0.05)  # 40 escalated, passes sampled at 5%, none kept
    assert high == 1.0
    assert low < 0.4  # issue 12: "delivery amount escalates 100%" was 40 of 71


def test_cmh_finds_a_within_stratum_association_and_ignores_a_confounded_one() -> None:
    # A word only German inputs have, escalating as often as every German input does.
    confounded = [(70, 100, 70, 100), (0, 0, 100, 1000)]
    assert cmh(confounded)[1] == 1.0
    real = [(30, 40, 100, 1000), (8, 10, 70, 100)]
    assert cmh(real)[1] < 1e-6


def test_benjamini_hochberg_adjusts_step_up() -> None:
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.5]) == pytest.approx(
        [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5]
    )


def test_rates_use_the_records_read_not_the_whole_period_counters() -> None:
    """Issue 12: with --sample the records are the newest N while the counters span the
    whole period; weights from the records' own inclusion probabilities stay unbiased."""
    rng = random.Random(3)
    records = []
    for _ in range(4000):
        escalated = rng.random() < 0.29
        kept = escalated or rng.random() < 0.05
        r = call(escalated=escalated, sampled=kept, tokens=100)
        records.append(replace(r, inclusion_probability=1.0 if escalated else 0.05))
    newest = [r for r in records[2000:] if r.sampled]  # the newest half of the stored records
    report = aggregate(newest, days_of(records))  # counters of all 4,000 calls
    (bucket,) = report.tasks[0].patterns.size_buckets
    assert bucket.rate_low <= 0.29 <= bucket.rate_high
    assert bucket.calls == pytest.approx(2000, rel=0.15)


def _workload(trigger_text: str, rare: int) -> list[CallRecord]:
    """2,000 background calls escalating at 10%, 200 with ``trigger_text`` at 60%, and
    ``rare`` words each in 16 escalated inputs; passes stored at 5%."""
    rng = random.Random(11)
    out: list[CallRecord] = []

    def add(text: str, p: float) -> None:
        escalated = rng.random() < p
        kept = escalated or rng.random() < 0.05
        r = call(escalated=escalated, sampled=kept, text=text)
        out.append(replace(r, inclusion_probability=1.0 if escalated else 0.05))

    for _ in range(2000):
        add("user: tell me about the weather\n", 0.1)
    for _ in range(200):
        add(f"user: {trigger_text}\n", 0.6)
    letters = "abcdefghijklmnopqrstuvwxyz"
    for k in range(rare):
        for _ in range(16):
            add(f"user: tell me about the weather z{letters[k // 26]}{letters[k % 26]}\n", 1.0)
    return out


def _patterns(records: list[CallRecord]) -> Patterns:
    stored = [r for r in records if r.sampled]
    return aggregate(stored, days_of(records)).tasks[0].patterns


def test_groups_too_small_to_ever_be_claimed_are_not_tested() -> None:
    """At sample_passes 0.05 even 16 of 16 stored inputs escalating cannot show a rate above
    the others': such terms are left out of the family (which depends on the margins only),
    so they do not dilute the tests of the groups that can be claimed."""
    without = _patterns(_workload("voucher please", 0))
    with_rare = _patterns(_workload("voucher please", 40))
    assert with_rare.tested == without.tested
    assert any(t.term == "voucher" for t in with_rare.terms)


def test_tokens_with_the_same_table_are_one_test_and_one_entry() -> None:
    """The words say and anything and the phrase 'say anything' always occur together."""
    one = _patterns(_workload("voucher say", 0))
    three = _patterns(_workload("voucher say anything", 0))
    assert three.tested == one.tested
    (entry,) = [t for t in three.terms if "voucher" in t.members]
    assert {"voucher", "say", "anything", "say anything"} <= set(entry.members)


def test_the_terms_do_not_depend_on_the_order_the_records_are_read_in() -> None:
    """More tied discoveries than are checked exactly (60 words and their phrases, each in
    the same 16 escalated inputs of its own): which are checked goes by token, not by the
    order the terms were first counted in (the salted str hash orders a set's terms).
    Fewer inputs than the collector keeps the terms of, so that merging sees them all."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    records = [call(escalated=i % 10 == 0, text="user: tell me about the weather\n")
               for i in range(1000)]  # fmt: skip
    for k in range(60):
        word = f"z{letters[k // 26]}{letters[k % 26]}"
        records += [call(escalated=True, text=f"user: the weather {word}\n") for _ in range(16)]
    records = [replace(r, inclusion_probability=1.0) for r in records]
    forward = _patterns(records)
    backward = _patterns(records[::-1])
    assert len(forward.terms) == 10
    assert forward.terms == backward.terms
