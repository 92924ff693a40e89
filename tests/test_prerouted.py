"""The report's pre-routed figures: estimates from stored records, said to be, with intervals."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from cascade.events import Attempt
from cascade.report.prerouted import PreRouteCollector, pre_routed_lines, pre_routed_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from cascade.events import CallRecord

STRONG = Attempt(
    model="gpt-4o", purpose="answer", output="ok", verdicts=(), prompt_tokens=100,
    completion_tokens=25, cached_tokens=0, cost_usd=0.0005, latency_s=0.9,
)  # fmt: skip


def _routed(make_record: Callable[..., CallRecord], p_in: float, **kw: Any) -> CallRecord:
    return make_record(
        escalated=False, attempts=(STRONG,), models=("gpt-4o",), model="gpt-4o", cost_usd=0.0005,
        extra={"start_at": 0, "start_p": 0.9}, inclusion_probability=p_in, **kw,
    )  # fmt: skip


def test_sampled_pre_routed_calls_are_an_estimate_with_an_interval_that_covers_the_truth(
    make_record: Callable[..., CallRecord],
) -> None:
    rng = random.Random(7)
    covered = 0
    for _ in range(200):  # 1,000 pre-routed calls, each stored with probability 0.1
        c = PreRouteCollector()
        for _ in range(1000):
            if rng.random() < 0.1:
                c.add(_routed(make_record, 0.1))
        for _ in range(50):
            c.add(make_record(escalated=False, inclusion_probability=1.0))
        p = pre_routed_of([c])
        assert p is not None and p.records == round(p.calls * 0.1)
        covered += p.calls_low <= 1000 <= p.calls_high
    assert covered >= 180  # a 95% interval: about 190 of 200
    lines = " ".join(pre_routed_lines(p, 200))
    assert f"estimated from {p.records:,} stored records" in lines
    assert f"about {p.calls:,.0f} calls (95% {p.calls_low:,.0f}-{p.calls_high:,.0f}" in lines


def test_every_call_stored_is_an_exact_count(make_record: Callable[..., CallRecord]) -> None:
    c = PreRouteCollector()
    for _ in range(3):
        c.add(_routed(make_record, 1.0))
    p = pre_routed_of([c])
    assert p is not None and (p.calls, p.calls_low, p.calls_high, p.records) == (3, 3, 3, 3)
    assert "3 calls (all stored) started at a stronger rung" in pre_routed_lines(p, 200)[0]


def test_no_stored_pass_that_started_cheap_leaves_the_saving_unknown(
    make_record: Callable[..., CallRecord],
) -> None:
    c = PreRouteCollector()
    c.add(_routed(make_record, 0.05))
    for _ in range(4):  # only escalated calls of the cheap start were stored
        c.add(make_record(escalated=True, inclusion_probability=1.0))
    p = pre_routed_of([c])
    assert p is not None and (p.saved_usd, p.saved_latency_s, p.cheap_usd) == (None, None, None)
    text = " ".join(pre_routed_lines(p, 200))
    assert "money saved: unknown (the 4 stored calls that started cheap all escalated" in text
    assert "latency saved" not in text
    c.add(make_record(escalated=False, inclusion_probability=0.05))  # one stored pass: known
    p = pre_routed_of([c])
    assert p is not None and p.saved_usd is not None and p.cheap_passes == 1
    assert "over about 24 calls that started cheap (5 stored)" in " ".join(pre_routed_lines(p, 200))


def test_unknown_cheap_figures_are_null_and_counts_read_in_the_singular(
    make_record: Callable[..., CallRecord],
) -> None:
    c = PreRouteCollector()
    c.add(_routed(make_record, 0.5))
    c.add(make_record(escalated=True, inclusion_probability=1.0))  # no stored cheap pass
    p = pre_routed_of([c])
    assert p is not None and p.cheap_calls is None and not p.exact
    text = " ".join(pre_routed_lines(p, 200))
    assert "estimated from 1 stored record)" in text
    assert "the stored call that started cheap escalated: none that passed" in text
    from cascade.report.prerouted import pre_routed_to_dict

    assert pre_routed_to_dict(p)["cheap_calls"] is None


def test_all_stored_is_said_only_when_every_call_was_stored(
    make_record: Callable[..., CallRecord],
) -> None:
    c = PreRouteCollector()
    c.add(_routed(make_record, 0.999))  # an interval narrower than a call, still an estimate
    p = pre_routed_of([c])
    assert p is not None and p.calls_high - p.calls_low < 0.5 and not p.exact
    assert "(all stored)" not in pre_routed_lines(p, 200)[0]
