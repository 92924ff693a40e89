"""Threshold calibration: the sound choice holds on fresh data, the naive one does not."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from cascade import _cli_eval
from cascade.calibrate import Sample, betting_p_value, calibrate, fixed_sequence, quality_at
from cascade.cli import main
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
    runs = 120
    for i in range(runs):
        cal = calibrate(draw(400, rng), target=TARGET, delta=0.1, max_thresholds=60, seed=i)
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


def test_short_threshold_accepts_exactly_the_same_sample_scores() -> None:
    samples = draw(500, random.Random(3))
    cal = calibrate(samples, target=0.9)
    assert cal.short_threshold is not None
    assert cal.threshold is not None
    assert len(repr(cal.short_threshold)) <= len(repr(cal.threshold))
    assert all((s.score >= cal.threshold) == (s.score >= cal.short_threshold) for s in samples)


def test_betting_p_value_is_valid_at_the_boundary_of_the_null() -> None:
    rng = random.Random(11)
    hits = 0
    for _ in range(400):
        losses = [rng.choice((-0.5, 0.5)) for _ in range(200)]  # mean exactly 0: the null
        hits += betting_p_value(losses, -1.0, 1.0, 0.1) <= 0.1
    assert hits / 400 <= 0.1
    assert betting_p_value([-0.5] * 200, -1.0, 1.0, 0.1) < 1e-6  # clearly below: rejected


def test_fixed_sequence_stops_at_the_first_candidate_it_cannot_certify() -> None:
    good, bad = [-0.5] * 100, [0.5] * 100
    ps, certified = fixed_sequence([good, good, bad, good], -1.0, 1.0, 0.05)
    assert certified == 2
    assert len(ps) == 3


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
    _cli_eval.write_threshold(path, 1, 0.9731)
    assert path.read_text() == POLICY.replace("min: 0.9", "min: 0.9731")


def test_write_adds_min_when_absent(tmp_path: Path) -> None:
    path = tmp_path / "tickets.yaml"
    path.write_text(POLICY.replace("    min: 0.9              # tuned by hand\n", ""))
    _cli_eval.write_threshold(path, 1, 0.5)
    assert "  - type: confidence\n    min: 0.5\n    source: logprobs\n" in path.read_text()


def observe_record(
    make_record: Callable[..., CallRecord], score: float, agree: bool, structure_ok: bool = True
) -> CallRecord:
    reasons = [] if structure_ok else ["structure: no match"]
    return make_record(
        mode="observe",
        escalated=False,
        extra={
            "observe": {
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
        },
    )


def test_calibrate_from_observation_records_writes_the_policy(
    tmp_path: Path, make_record: Callable[..., CallRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "tickets.yaml").write_text(POLICY)
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    store = store_from_url(url)
    rng = random.Random(3)
    for _ in range(1500):
        s = rng.random()
        rec = observe_record(make_record, s, rng.random() < 0.8 + 0.2 * s, rng.random() > 0.1)
        store.add(rec.__class__(**{**_fields(rec), "task": "tickets"}))
    store.add(make_record(task="tickets"))  # a cascade-mode record: not an observation
    store.close()
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
    assert "structure" in out
    assert "naive" in out
    written = (policies / "tickets.yaml").read_text()
    assert "# tuned by hand" in written
    assert "min: 0.9 " not in written
    new_min = float(written.split("min: ")[1].split()[0])
    # population agreement at t: 1 - 0.9 * 0.1 * (1 - t)^2, which is 0.95 at t = 0.255; the
    # certified choice lands near it (above it with probability >= 95%), far from 0.9
    assert 0.1 < new_min < 0.6


def _fields(rec: CallRecord) -> dict[str, object]:
    return {f: getattr(rec, f) for f in rec.__dataclass_fields__}
