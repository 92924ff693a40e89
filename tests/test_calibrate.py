"""Threshold calibration: the sound choice holds on fresh data, the naive one does not."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

import pytest
import yaml

from cascade.cli import main
from cascade.evals import (
    Counts,
    Sample,
    calibrate,
    edit,
    exact,
    fixed_sequence,
    p_value,
    quality_at,
)
from cascade.events import Observation
from cascade.stores import store_from_url

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from cascade.events import CallRecord

TARGET = 0.97
STRONG_ACC = 0.9


def cheap_acc(score: float) -> float:
    """The synthetic cheap model: right with probability 0.55 + 0.45 * score."""
    return 0.55 + 0.45 * score


def population_quality(t: float) -> float:
    """Exact expected cascade accuracy at threshold t when scores are uniform on [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    accepted = 0.55 * (1 - t) + 0.225 * (1 - t * t)
    return accepted + t * STRONG_ACC


def draw(n: int, rng: random.Random) -> list[Sample]:
    out = []
    for _ in range(n):
        s = rng.random()
        out.append(Sample(s, rng.random() < cheap_acc(s), rng.random() < STRONG_ACC, 1.0, 16.0))
    return out


def test_sound_threshold_holds_on_new_traffic_and_naive_does_not() -> None:
    rng = random.Random(7)
    goal = TARGET * STRONG_ACC
    sound_miss = naive_miss = 0
    runs = 100
    for _ in range(runs):
        cal = calibrate(draw(400, rng), target=TARGET, delta=0.1, max_thresholds=40)
        sound_miss += population_quality(cal.chosen.threshold) < goal
        naive_miss += population_quality(cal.naive.threshold) < goal
    assert sound_miss / runs <= 0.1
    assert naive_miss / runs >= 0.3  # the naive choice fails about half the time


def test_chosen_threshold_is_looser_than_escalating_everything_when_data_allows() -> None:
    cal = calibrate(draw(3000, random.Random(1)), target=TARGET, max_thresholds=100)
    assert cal.threshold is not None
    assert cal.chosen.escalation_rate < 0.9
    assert cal.savings > 0.05
    fresh = draw(20000, random.Random(2))
    q, _esc, _cost = quality_at(fresh, cal.chosen.threshold)
    assert q >= TARGET * sum(s.strong_ok for s in fresh) / len(fresh) - 0.005
    assert "probability >= 95%" in cal.guarantee
    assert "0.97" in cal.guarantee


def test_a_small_sample_certifies_nothing_and_keeps_the_strong_model() -> None:
    # 40 examples: even a perfect record among the kept answers is no evidence at 3% slack
    perfect = [Sample(1.0, True, True, 1.0, 16.0) for _ in range(40)]
    cal = calibrate(perfect, target=TARGET)
    assert cal.threshold is None
    assert cal.short_threshold is None
    assert cal.chosen.escalation_rate == 1.0
    assert cal.naive_threshold == 1.0  # the sample alone would accept everything


def test_offsetting_gains_count_toward_the_target() -> None:
    # The kept answers are wrong 5% of the time where the strong one is right, and right as
    # often where it is wrong: no net loss, so a large enough sample certifies keeping them.
    rng = random.Random(4)
    samples = []
    for _ in range(4000):
        strong_ok = rng.random() < 0.8
        flip = rng.random() < (0.05 / 0.8 if strong_ok else 0.05 / 0.2)
        samples.append(Sample(0.9, strong_ok != flip, strong_ok, 1.0, 16.0))
    cal = calibrate(samples, target=TARGET)
    assert cal.threshold == 0.9
    assert cal.chosen.escalation_rate == 0.0


def test_agreement_p_value_is_the_exact_binomial_tail() -> None:
    n, lost = 300, 3
    exact = sum(math.comb(n, k) * 0.03**k * 0.97 ** (n - k) for k in range(lost + 1))
    got = p_value(Counts(n, n, lost, 0), target=TARGET, delta=0.05, agreement=True)
    assert got == pytest.approx(exact, rel=1e-9)
    with pytest.raises(ValueError, match="agreement counts"):
        p_value(Counts(n, n - 1, lost, 0), target=TARGET, delta=0.05, agreement=True)


@pytest.mark.parametrize("gained_rate", [0.0, 0.01, 0.05])
def test_accuracy_p_value_is_valid_on_the_boundary_of_the_null(gained_rate: float) -> None:
    """Where quality is exactly target x strong's, a threshold is certified <= delta of the
    time, whatever the nuisance (how often the kept answers gain on the strong model)."""
    rng = random.Random(11)
    n, strong_acc, delta = 200, 0.8, 0.1
    lost_rate = gained_rate + (1 - TARGET) * strong_acc
    hits, runs = 0, 400
    for _ in range(runs):
        strong = lost = gained = 0
        for _ in range(n):
            u = rng.random()
            strong += u < strong_acc
            lost += u < lost_rate
            gained += strong_acc <= u < strong_acc + gained_rate
        hits += p_value(Counts(n, strong, lost, gained), target=TARGET, delta=delta) <= delta
    assert hits / runs <= delta


def test_accuracy_p_value_bounds_the_tail_over_every_value_of_the_nuisance() -> None:
    """Brute force: the tail probability on a dense grid of the nuisance, by enumeration."""
    n, strong, lost, gained, delta = 120, 96, 2, 1, 0.1
    m, eps = n - strong, 1 - TARGET
    hi = exact.upper_bound(strong, n, exact._STRONG_SHARE * delta)
    rho = (1 - hi) / hi
    r = rho * strong / m

    def stat(lo: int, ga: int) -> float:
        return (eps * strong - lo + r * ga) / math.sqrt(lo + r * r * ga + 1)

    t = stat(lost, gained)
    region = [(lo, ga) for lo in range(strong + 1) for ga in range(m + 1) if stat(lo, ga) >= t]

    def tail(b: float) -> float:
        a = eps + rho * b
        return sum(
            math.comb(strong, lo) * a**lo * (1 - a) ** (strong - lo)
            * math.comb(m, ga) * b**ga * (1 - b) ** (m - ga)
            for lo, ga in region
        )  # fmt: skip

    b_hi = exact.upper_bound(gained, m, exact._NUISANCE_SHARE * delta)
    dense = max(tail(b_hi * i / 2000) for i in range(2001))
    got = p_value(Counts(n, strong, lost, gained), target=TARGET, delta=delta)
    spent = (exact._STRONG_SHARE + exact._NUISANCE_SHARE) * delta  # on the two bounds
    assert dense + spent - 1e-12 <= got <= dense + spent + delta / 100


def test_accuracy_p_value_is_small_when_clearly_inside_and_one_when_outside() -> None:
    assert p_value(Counts(2000, 1600, 5, 5), target=TARGET, delta=0.05) < 0.01
    assert p_value(Counts(2000, 1600, 60, 5), target=TARGET, delta=0.05) == 1.0


def test_fixed_sequence_stops_at_the_first_candidate_it_cannot_certify() -> None:
    good, bad = Counts(2000, 1600, 5, 5), Counts(2000, 1600, 60, 5)
    ps, certified = fixed_sequence([good, good, bad, good], target=TARGET, delta=0.05)
    assert certified == 2
    assert len(ps) == 3


def test_short_threshold_accepts_exactly_the_same_sample_scores() -> None:
    samples = draw(500, random.Random(3))
    cal = calibrate(samples, target=0.9)
    assert cal.short_threshold is not None
    assert cal.threshold is not None
    assert len(repr(cal.short_threshold)) <= len(repr(cal.threshold))
    assert all((s.score >= cal.threshold) == (s.score >= cal.short_threshold) for s in samples)


def test_validators_that_matter_are_reported() -> None:
    rng = random.Random(5)
    samples = [
        Sample(s.score, s.cheap_ok, s.strong_ok, 1.0, 16.0, {"structure": rng.random() > 0.2})
        for s in draw(1000, rng)
    ]
    (effect,) = calibrate(samples, target=TARGET).validators
    assert effect.name == "structure"
    assert 0.15 < effect.fail_rate < 0.25
    cal = calibrate(samples, target=TARGET)
    assert effect.cost_without < cal.chosen.cost  # dropping a check escalates less


def test_rejects_empty_or_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no calibration samples"):
        calibrate([], target=0.9)
    with pytest.raises(ValueError, match="target"):
        calibrate(draw(10, random.Random(0)), target=1.5)
    with pytest.raises(ValueError, match="strong_ok True"):
        calibrate(draw(10, random.Random(0)), target=0.9, measure="agreement")


POLICY = """\
# Route a ticket: one label.
task: tickets
models: [gpt-4o-mini, gpt-4o]
validators:
  - type: structure
    match: ["^(a|b)$"]   # keep this comment
  - type: confidence
    source: logprobs
    min: 0.9              # tuned by hand
agreement: {comparator: normalized}
"""


def test_write_changes_only_the_min_value(tmp_path: Path) -> None:
    path = tmp_path / "tickets.yaml"
    path.write_text(POLICY)
    edit.write_threshold(path, 1, 0.9731)
    assert path.read_text() == POLICY.replace("min: 0.9", "min: 0.9731")


def test_write_keeps_a_tiny_threshold_a_number_for_yaml(tmp_path: Path) -> None:
    path = tmp_path / "tickets.yaml"
    path.write_text(POLICY)
    edit.write_threshold(path, 1, 4e-06)  # "4e-06" would be a string to PyYAML
    assert yaml.safe_load(path.read_text())["validators"][1]["min"] == 4e-06


def test_write_marks_a_certified_threshold_and_the_report_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "tickets.yaml"
    path.write_text(POLICY)
    edit.write_threshold(path, 1, 0.97, note="target 0.97, delta 0.05")
    line = "    min: 0.97              # tuned by hand  # certified by cascade calibrate "
    assert line + "(target 0.97, delta 0.05)\n" in path.read_text()
    assert edit.certified_validators(path) == {1}
    edit.write_threshold(path, 1, 0.98, note="target 0.98, delta 0.05")  # one mark, renewed
    assert path.read_text().count(edit.CERTIFIED) == 1
    edit.write_threshold(path, 1, 0.9)  # set by hand: no longer certified
    assert path.read_text() == POLICY
    assert edit.certified_validators(path) == set()


def test_write_adds_min_when_absent(tmp_path: Path) -> None:
    path = tmp_path / "tickets.yaml"
    path.write_text(POLICY.replace("    min: 0.9              # tuned by hand\n", ""))
    edit.write_threshold(path, 1, 0.5)
    assert "  - type: confidence\n    min: 0.5\n    source: logprobs\n" in path.read_text()


def observe_record(
    make_record: Callable[..., CallRecord], score: float, agree: bool, structure_ok: bool = True
) -> CallRecord:
    reasons = [] if structure_ok else ["structure: no match"]
    return make_record(
        task="tickets",
        mode="observe",
        escalated=False,
        observation=Observation.from_dict(
            {
                "decision": "accept" if structure_ok and score >= 0.9 else "escalate",
                "reasons": reasons,
                "scores": {"confidence": score},
                "agree": agree,
                "comparator": "normalized",
                "cheap_output": "a",
                "strong_output": "a",
                "cheap_cost_usd": 0.0001,
                "strong_cost_usd": 0.0016,
                "projected_cost_usd": 0.0001,
            }
        ),
    )


def observed(tmp_path: Path, records: list[CallRecord]) -> tuple[Path, str]:
    """A policies directory with tickets.yaml (POLICY), and a SQLite store holding
    ``records``: (the directory, the store URL)."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "tickets.yaml").write_text(POLICY)
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    store = store_from_url(url)
    for record in records:
        store.add(record)
    store.close()
    return policies, url


def test_calibrate_from_observation_records_writes_the_policy(
    tmp_path: Path, make_record: Callable[..., CallRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(3)
    records = [
        observe_record(make_record, s, rng.random() < 0.8 + 0.2 * s, rng.random() > 0.1)
        for s in (rng.random() for _ in range(1500))
    ]
    records.append(make_record(task="tickets"))  # a cascade-mode record: not an observation
    policies, url = observed(tmp_path, records)
    code = main(
        [
            "calibrate",
            "--task",
            "tickets",
            "--target",
            "0.95",
            "--from-store",
            "--store",
            url,
            "--policies",
            str(policies),
            "--write",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "1500 calibration examples" in out
    assert "guarantee: with probability >= 95%" in out
    assert "agreement with the strong model is >= 0.95" in out
    assert "exact binomial test" in out
    assert "structure" in out
    assert "naive" in out
    written = (policies / "tickets.yaml").read_text()
    assert "# tuned by hand" in written
    assert "min: 0.9 " not in written
    new_min = float(written.split("min: ")[1].split()[0])
    # population agreement at t: 1 - 0.9 * 0.1 * (1 - t)^2, which is 0.95 at t = 0.255; the
    # certified choice lands near it (above it with probability >= 95%), far from 0.9
    assert 0.1 < new_min < 0.6


def test_calibrate_says_when_nothing_is_certified_and_leaves_the_policy(
    tmp_path: Path, make_record: Callable[..., CallRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    # agreeing, confident answers, but too few to certify 3% slack
    records = [observe_record(make_record, 0.5 + i / 100, True) for i in range(30)]
    policies, url = observed(tmp_path, records)
    argv = ["calibrate", "--task", "tickets", "--target", "0.97", "--from-store"]
    code = main([*argv, "--store", url, "--policies", str(policies), "--write"])
    out = capsys.readouterr().out
    assert code == 1
    assert "no threshold of confidence could be certified at delta 0.05" in out
    assert "keep the strong model" in out
    assert "method: exact binomial test" in out
    assert "examples would certify it (now 30)" in out and "comparator: judge" in out
    assert "unchanged" in out
    assert (policies / "tickets.yaml").read_text() == POLICY


def test_calibration_with_a_model_of_unknown_price_says_unknown_cost() -> None:
    from cascade.cli.calibrate import render_calibration

    rng = random.Random(5)
    samples = [
        Sample(s := rng.random(), rng.random() < 0.5 + s / 2, True, 0.0, 0.0, cost_known=False)
        for _ in range(3000)
    ]
    cal = calibrate(samples, target=0.9, measure="agreement")
    assert not cal.costs_known
    text = render_calibration(cal, "confidence")
    assert "unknown cost" in text and "$0.0000" not in text and "saves 0.0%" not in text


def test_the_report_command_reads_certified_thresholds_from_the_policies(tmp_path: Path) -> None:
    from cascade.cli.report import certified_thresholds

    path = tmp_path / "tickets.yaml"
    path.write_text(POLICY)
    assert certified_thresholds(str(tmp_path)) == {}
    edit.write_threshold(path, 1, 0.97, note="target 0.97, delta 0.05")
    assert certified_thresholds(str(tmp_path)) == {"tickets": {"confidence"}}
    assert certified_thresholds(str(tmp_path / "missing")) == {}
