"""The cascade on real recorded model outputs: calibrate on one split, measure on the other.

    python benchmarks/recorded.py            # data: $CASCADE_DATA or ../shared/data
    python benchmarks/recorded.py --quick    # delta 0.05 only, no resampling, no curve

Every number comes from the FULL cascade (``Cascade.arun``: drivers, engine, validators,
pricing) talking HTTP to ``ReplayServer``, which answers each request with what the asked
model really answered when the data was recorded (see ../shared/data/README.md):

- MMLU: ``confidence`` from the answer token's logprob; TriviaQA, GSM8K: ``confidence``
  from self-verification (a follow-up "is this correct?" call, whose P(yes) was recorded).
- Prices: gpt-4o / gpt-4o-mini from the built-in table; the Qwen models' price per token is
  derived from the recording (cost_usd / tokens on MMLU, where no verification was billed).
- The threshold is calibrated on the train split (GSM8K has none: its queries are split by
  idx, even for calibration, odd for evaluation) with ``cascade.calibrate`` (an exact test of
  the paired loss, Learn then Test) for ``--target`` (0.97) of gpt-4o's accuracy, at each
  ``--delta``; "naive" is the threshold whose calibration-sample quality just meets the target.
- Ladders (gpt-4o-mini -> qwen2.5-72b -> gpt-4o, and all four models) get one threshold per
  rung (a ``confidence_by_model`` validator registered here), certified along one path (the
  same min on every rung) by the same test.
- The public path, as a user would run it: observe mode on the train split into a SQLite
  store (``cascade batch``), ``cascade calibrate --from-store --write`` (quality there is
  agreement with gpt-4o), the policy switched to ``mode: cascade``, the test split through
  ``cascade batch --out``; scored against the recording's answer key.
- ``--resample N``: the calibration repeated on N random calibration sets of the train split's
  size drawn from the test split itself (evaluated on the rest of it): how often the target
  holds when calibration and traffic do come from the same distribution.
- routellm-gsm8k (Mixtral-8x7B vs GPT-4) has no confidence signal: the cascade checks only
  the "#### answer" structure; reported with the all-cheap / all-strong / oracle points.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import yaml

from cascade import Cascade, Policy, PolicySet, Result, register_validator
from cascade.cli import main as cli
from cascade.evals import (
    Calibration,
    Counts,
    Example,
    Sample,
    calibrate,
    fixed_sequence,
    observed_samples,
    run_mode,
    write_threshold,
)
from cascade.stores import store_from_url
from cascade.testing import ReplayServer, load_recorded, load_routellm, record_tag, request_of
from cascade.testing.replay import ROUTELLM_CHEAP, ROUTELLM_STRONG
from cascade.validators import build_validator

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

HERE = Path(__file__).resolve().parent
MINI, C32, Q72, G4O = "gpt-4o-mini", "qwen2.5-32b-coder-instruct", "qwen2.5-72b-instruct", "gpt-4o"
LADDERS = {"3-model": (MINI, Q72, G4O), "4-model": (MINI, C32, Q72, G4O)}
CONCURRENCY = 16


class ByModel:
    """``confidence`` with one ``min`` per model (one threshold per rung of a ladder)."""

    def __init__(self, mins: Mapping[str, float], **options: Any) -> None:
        self.name = "confidence"
        self.inner: dict[str, Any] = {
            m: build_validator("confidence", "confidence", {**options, "min": v}, policy_dir=None)
            for m, v in mins.items()
        }
        self.default: Any = build_validator(
            "confidence", "confidence", {**options, "min": 0.0}, policy_dir=None
        )
        for hook in ("prepare", "follow_up"):  # the engine looks these up on the instance
            if hasattr(self.default, hook):
                setattr(self, hook, getattr(self.default, hook))
        if hasattr(self.default, "judge"):
            self.judge = lambda c, reply: self.inner.get(c.model, self.default).judge(c, reply)

    def __call__(self, completion: Any) -> Any:
        return self.inner.get(completion.model, self.default)(completion)


register_validator("confidence_by_model", ByModel)


# -- data ------------------------------------------------------------------------------------


def data_dir() -> Path:
    return Path(os.environ.get("CASCADE_DATA") or HERE.parent.parent / "shared" / "data")


def splits(root: Path) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """dataset -> (calibration records, evaluation records)."""
    rec = root / "recorded"
    out = {
        name: (
            load_recorded(rec / f"{name}_qwen_oai_train.jsonl"),
            load_recorded(rec / f"{name}_qwen_oai_test.jsonl"),
        )
        for name in ("mmlu", "triviaqa")
    }
    gsm = load_recorded(rec / "gsm8k_qwen_oai_train.jsonl")
    out["gsm8k"] = ([r for r in gsm if r["idx"] % 2 == 0], [r for r in gsm if r["idx"] % 2])
    return out


def qwen_prices(mmlu: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """USD per million tokens of the Qwen models, from the MMLU recording's cost / tokens."""
    prices = {}
    for m in (C32, Q72):
        cost = sum(r["models"][m]["cost_usd"] for r in mmlu)
        tokens = sum(r["models"][m]["tokens_in"] + r["models"][m]["tokens_out"] for r in mmlu)
        per_m = round(cost / tokens * 1e6, 4)
        prices[m] = {"input": per_m, "output": per_m}
    return prices


def examples(records: Sequence[Mapping[str, Any]]) -> list[Example]:
    lines = [request_of(r) for r in records]
    return [Example(q["id"], q["messages"], "", q["params"]) for q in lines]


# -- running the cascade ---------------------------------------------------------------------


class Bench:
    """Runs policies on the replay server and scores answers from the recording."""

    def __init__(self, server: Any, records: Sequence[Mapping[str, Any]], tmp: Path):
        self.server, self.tmp = server, tmp
        self.by_tag = {record_tag(r): r for r in records}
        # Retries as a real client would: many new connections at once can overflow the
        # test server's listen backlog (socketserver's default of 5) and be reset.
        self.client = server.async_client(max_retries=2)
        self.errors = 0

    def policy(
        self,
        template: str,
        models: Sequence[str],
        mins: Sequence[float] | None,
        prices: Mapping[str, Any],
    ) -> Policy:
        spec = yaml.safe_load((HERE / "policies" / f"{template}.yaml").read_text())
        spec["models"] = list(models)
        spec["prices"] = {
            **spec.get("prices", {}),
            **{m: p for m, p in prices.items() if m in models},
        }
        if mins is not None:
            (conf,) = spec["validators"]
            options = {k: v for k, v in conf.items() if k not in ("type", "min")}
            spec["validators"] = [
                {
                    "type": "confidence_by_model",
                    "name": "confidence",
                    "mins": dict(zip(models, mins, strict=False)),
                    **options,
                }
            ]
        return Policy.from_dict(spec, task=template)

    async def run(self, policy: Policy, exs: Sequence[Example], mode: str) -> list[Any]:
        policies = PolicySet(self.tmp)
        policies.add(policy)
        cascade = Cascade(policies, async_client=self.client, store="memory://")
        res = await run_mode(cascade, policy, exs, mode, concurrency=CONCURRENCY)
        for ex, r in zip(exs, res, strict=True):  # replayed answers: any error is a fault here
            errors = [a.error for a in r.attempts if a.error] if isinstance(r, Result) else [r]
            if errors:
                self.errors += 1
                print(f"{policy.task} {mode} {ex.id}: {errors}", file=sys.stderr)
        return res

    def correct_answer(self, tag: str, model: str, output: str) -> bool:
        out = self.by_tag[tag]["models"][model]
        assert output == out["answer"], (tag, model)
        return bool(out["correct"])

    def correct(self, ex: Example, result: Any) -> bool:
        if not isinstance(result, Result):
            return False
        return self.correct_answer(ex.id, result.model, result.output)


def cost(result: Any, verify: bool = True) -> float:
    if not isinstance(result, Result):
        return 0.0
    return sum(a.cost_usd or 0.0 for a in result.attempts if verify or a.purpose != "verify")


def score(result: Any) -> float | None:
    if not isinstance(result, Result):
        return None
    first = next((a for a in result.attempts if a.purpose == "answer"), None)
    return (
        next((v.score for v in first.verdicts if v.validator == "confidence"), None)
        if (first)
        else None
    )


@dataclass(frozen=True)
class PerExample:
    """One split through the cheap and the strong model alone, example by example."""

    score: list[float | None]
    cheap_ok: list[bool]
    strong_ok: list[bool]
    cheap_cost: list[float]  # verification included
    strong_cost: list[float]  # the strong answer alone

    def samples(self, idx: Sequence[int]) -> list[Sample]:
        return [
            Sample(
                self.score[i],
                self.cheap_ok[i],
                self.strong_ok[i],
                self.cheap_cost[i],
                self.strong_cost[i],
            )
            for i in idx
        ]

    def at(self, t: float | None, idx: Sequence[int]) -> tuple[float, float, float]:
        """(quality, cost) as shares of the strong model's on ``idx``, and the escalation
        rate, of the cascade at threshold t (None: the strong model alone)."""
        strong = sum(self.strong_ok[i] for i in idx)
        base = sum(self.strong_cost[i] for i in idx)
        if t is None:
            return 1.0, 1.0, 1.0
        keep = [i for i in idx if (s := self.score[i]) is not None and s >= t]
        kept = set(keep)
        good = sum(self.cheap_ok[i] if i in kept else self.strong_ok[i] for i in idx)
        spent = sum(self.cheap_cost[i] + (0 if i in kept else self.strong_cost[i]) for i in idx)
        return good / strong, spent / base, 1 - len(keep) / len(idx)


# -- one dataset -----------------------------------------------------------------------------


async def rung_data(
    bench: Bench, template: str, model: str, exs: Sequence[Example], prices: Mapping[str, Any]
) -> dict[str, list[Any]]:
    """One model alone (cheap mode of [model, gpt-4o]): score, correctness, cost per example."""
    policy = bench.policy(template, [model, G4O], None, prices)
    res = await bench.run(policy, exs, "cheap")
    return {
        "score": [score(r) for r in res],
        "ok": [bench.correct(e, r) for e, r in zip(exs, res, strict=True)],
        "cost": [cost(r) for r in res],
    }


def walk(
    rungs: Sequence[Mapping[str, list[Any]]],
    strong: Mapping[str, list[Any]],
    mins: Sequence[float],
    i: int,
) -> tuple[bool, float]:
    """(correct, cost) of example i through a ladder with these per-rung thresholds."""
    spent = 0.0
    for rung, t in zip(rungs, mins, strict=True):
        spent += rung["cost"][i]
        s = rung["score"][i]
        if s is not None and s >= t:
            return rung["ok"][i], spent
    return strong["ok"][i], spent + strong["cost"][i]


def certify_ladder(
    rungs: Sequence[Mapping[str, list[Any]]],
    strong: Mapping[str, list[Any]],
    target: float,
    delta: float,
) -> list[float]:
    """Per-rung thresholds certified along one path (the same min on every rung), strictest
    first, by the exact test of ``cascade.calibrate``; the last one certified."""
    n = len(strong["ok"])
    scores = sorted({s for s in rungs[0]["score"] if s is not None}, reverse=True)
    configs = [[t] * len(rungs) for t in [math.inf, *scores]]
    counts = []
    for mins in configs:
        oks = [walk(rungs, strong, mins, i)[0] for i in range(n)]
        counts.append(
            Counts(
                n,
                sum(strong["ok"]),
                sum(s and not o for s, o in zip(strong["ok"], oks, strict=True)),
                sum(o and not s for s, o in zip(strong["ok"], oks, strict=True)),
            )
        )
    _, certified = fixed_sequence(counts[1:], target=target, delta=delta)
    return configs[certified]


async def dataset(
    bench: Bench,
    name: str,
    calib: list[dict[str, Any]],
    evalset: list[dict[str, Any]],
    prices: Mapping[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    cx, ex = examples(calib), examples(evalset)
    target, deltas = args.target, args.delta
    base = bench.policy(name, [MINI, G4O], None, prices)
    strong_c = await bench.run(base, cx, "strong")
    strong: dict[str, list[Any]] = {
        "ok": [bench.correct(e, r) for e, r in zip(cx, strong_c, strict=True)],
        "cost": [cost(r) for r in strong_c],
    }
    rungs = {m: await rung_data(bench, name, m, cx, prices) for m in (MINI, C32, Q72)}
    cal_data = PerExample(
        rungs[MINI]["score"],
        rungs[MINI]["ok"],
        strong["ok"],
        rungs[MINI]["cost"],
        [cost(r, verify=False) for r in strong_c],
    )
    cals = {d: calibrate(cal_data.samples(range(len(cx))), target=target, delta=d) for d in deltas}
    # evaluation split: every point through the full cascade
    cheap_e = await bench.run(base, ex, "cheap")
    strong_e = await bench.run(base, ex, "strong")
    ok_c = [bench.correct(e, r) for e, r in zip(ex, cheap_e, strict=True)]
    ok_s = [bench.correct(e, r) for e, r in zip(ex, strong_e, strict=True)]
    ev = PerExample(
        [score(r) for r in cheap_e], ok_c, ok_s, [cost(r) for r in cheap_e],
        [cost(r, verify=False) for r in strong_e],
    )  # fmt: skip
    base_cost = sum(ev.strong_cost)
    strong_acc = sum(ok_s) / len(ex)
    rows: dict[str, dict[str, Any]] = {}

    def point(label: str, oks: Sequence[bool], costs: Sequence[float], esc: float, t: str) -> None:
        rows[label] = {
            "quality": sum(oks) / len(ex) / strong_acc,
            "cost": sum(costs) / base_cost,
            "escalation": esc,
            "threshold": t,
        }

    async def cascade_point(label: str, t: float | None) -> None:
        if t is None:  # nothing certified: the sound policy is the strong model alone
            point(label, ok_s, ev.strong_cost, 1.0, "none: strong only")
            return
        res = await bench.run(bench.policy(name, [MINI, G4O], [t], prices), ex, "cascade")
        point(
            label,
            [bench.correct(e, r) for e, r in zip(ex, res, strict=True)],
            [cost(r) for r in res],
            sum(r.escalated for r in res) / len(ex),
            f"{t:.6g}",
        )

    point("all-cheap", ok_c, [cost(r, verify=False) for r in cheap_e], 0.0, "")
    point("all-strong", ok_s, ev.strong_cost, 1.0, "")
    wrong = [not o for o in ok_c]
    point(
        "oracle",
        [c or s for c, s in zip(ok_c, ok_s, strict=True)],
        [
            cost(c, verify=False) + (cost(s, verify=False) if w else 0.0)
            for c, s, w in zip(cheap_e, strong_e, wrong, strict=True)
        ],
        sum(wrong) / len(ex),
        "",
    )
    for d, cal in cals.items():
        await cascade_point(f"sound, delta {d:g}", cal.short_threshold)
    await cascade_point("naive", cals[deltas[0]].naive_threshold)
    sweep = []
    every = range(len(ex))
    for t in sorted({s for s in ev.score if s is not None}):
        q, c, _ = ev.at(t, every)
        sweep.append((c, q))
    ladders = {}
    for lname, models in LADDERS.items():
        mins = certify_ladder([rungs[m] for m in models[:-1]], strong, target, deltas[0])
        ladders[lname] = mins
        label = f"ladder {lname}, delta {deltas[0]:g}"
        if math.isinf(mins[0]):  # nothing certified: the ladder is the strong model alone
            point(label, ok_s, ev.strong_cost, 1.0, "none: strong only")
            continue
        res = await bench.run(bench.policy(name, models, mins, prices), ex, "cascade")
        point(
            label,
            [bench.correct(e, r) for e, r in zip(ex, res, strict=True)],
            [cost(r) for r in res],
            sum(r.escalated for r in res) / len(ex),
            " / ".join(f"{x:.4g}" for x in mins),
        )
    return {
        "name": name,
        "n": (len(cx), len(ex)),
        "cals": cals,
        "rows": rows,
        "sweep": sweep,
        "cal_data": cal_data,
        "eval_data": ev,
        "cal_cheap_share": sum(cal_data.cheap_ok) / sum(cal_data.strong_ok),
    }


def resample(
    ev: PerExample, n_cal: int, target: float, delta: float, reps: int, seed: int = 0
) -> dict[str, Any]:
    """Calibrate on ``reps`` random draws of ``n_cal`` examples of one split and measure on
    the rest of it: the share of draws that meet the target, and the costs."""
    rng = random.Random(seed)
    everyone = list(range(len(ev.score)))
    met = {"sound": 0, "naive": 0}
    costs: dict[str, list[float]] = {"sound": [], "naive": []}
    for _ in range(reps):
        rng.shuffle(everyone)
        cal_idx, rest = everyone[:n_cal], everyone[n_cal:]
        cal = calibrate(ev.samples(cal_idx), target=target, delta=delta)
        for label, t in (("sound", cal.short_threshold), ("naive", cal.naive_threshold)):
            q, c, _ = ev.at(t, rest)
            met[label] += q >= target
            costs[label].append(c)
    return {
        "reps": reps,
        "n_cal": n_cal,
        "delta": delta,
        **{f"{k}_met": v / reps for k, v in met.items()},
        **{f"{k}_cost": statistics.median(v) for k, v in costs.items()},
    }


async def routellm(bench: Bench, records: list[dict[str, Any]]) -> dict[str, Any]:
    ex = examples(records)
    base = bench.policy("routellm_gsm8k", [ROUTELLM_CHEAP, ROUTELLM_STRONG], None, {})
    runs = {m: await bench.run(base, ex, m) for m in ("cheap", "strong", "cascade")}
    oks = {m: [bench.correct(e, r) for e, r in zip(ex, runs[m], strict=True)] for m in runs}
    base_cost = sum(cost(r) for r in runs["strong"])
    strong_acc = sum(oks["strong"]) / len(ex)
    rows = {}
    for label, m in (
        ("all-cheap", "cheap"),
        ("all-strong", "strong"),
        ("cascade (structure only)", "cascade"),
    ):
        rows[label] = {
            "quality": sum(oks[m]) / len(ex) / strong_acc,
            "cost": sum(cost(r) for r in runs[m]) / base_cost,
            "escalation": sum(r.escalated for r in runs[m]) / len(ex) if m != "strong" else 1.0,
            "threshold": "",
        }
    wrong = [not o for o in oks["cheap"]]
    rows["oracle"] = {
        "quality": sum(c or s for c, s in zip(oks["cheap"], oks["strong"], strict=True))
        / len(ex)
        / strong_acc,
        "cost": sum(
            cost(c) + (cost(s) if w else 0)
            for c, s, w in zip(runs["cheap"], runs["strong"], wrong, strict=True)
        )
        / base_cost,
        "escalation": sum(wrong) / len(ex),
        "threshold": "",
    }
    return {"name": "routellm-gsm8k", "n": (0, len(ex)), "rows": rows, "sweep": []}


# -- the public path: observe, calibrate --from-store, switch, run ---------------------------


def _cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(list(argv))
    return code, out.getvalue()


def _requests(path: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(request_of(r)) + "\n" for r in records)
    return path


def _labelled(path: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """Request lines with each model's recorded correctness as ``labels``."""
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            line = request_of(r)
            line["labels"] = {m: bool(o["correct"]) for m, o in r["models"].items()}
            f.write(json.dumps(line) + "\n")
    return path


# How each public path certifies its threshold: observation with the policy's own text
# comparator, observation with the judge (answered by the replay server from the recording's
# `correct` flags), or the labelled data path.
SOURCES = {
    "agreement": None,
    "judge": {"comparator": "judge", "model": MINI},
    "labels": None,
}


def public_path(
    bench: Bench,
    name: str,
    calib: Sequence[Mapping[str, Any]],
    evalset: Sequence[Mapping[str, Any]],
    ev: PerExample,
    target: float,
    delta: float,
    tmp: Path,
    source: str = "agreement",
) -> dict[str, Any]:
    """observe (or labelled data) -> cascade calibrate --write -> mode: cascade -> the test
    split, all through the public commands."""
    work = tmp / f"public-{name}-{source}"
    (work / "policies").mkdir(parents=True)
    policy = work / "policies" / f"{name}.yaml"
    spec = yaml.safe_load((HERE / "policies" / f"{name}.yaml").read_text())
    if SOURCES[source] is not None:
        spec["agreement"] = SOURCES[source]
    observing = source != "labels"
    spec["mode"] = "observe" if observing else "cascade"
    spec["observe_sample"] = 1.0
    policy.write_text(yaml.safe_dump(spec, sort_keys=False))
    obs = f"sqlite:///{work / 'observe.sqlite3'}"
    train = _requests(work / "train.jsonl", calib)
    test = _requests(work / "test.jsonl", evalset)
    pol = str(work / "policies")
    common = ["--task", name, "--target", str(target), "--policies", pol, "--delta", str(delta)]
    judge_share = None
    if observing:
        code, _ = _cli("batch", str(train), "--task", name, "--policies", pol, "--store", obs)
        assert code == 0, f"{name}: observe batch failed"
        code, report = _cli("calibrate", *common, "--from-store", "--store", obs, "--write")
        store = store_from_url(obs)
        try:
            records = list(store.records(task=name))
        finally:
            store.close()
        observed = observed_samples(records, "confidence")
        library: Calibration = calibrate(
            observed.samples, target=target, delta=delta, measure=observed.measure
        )
        strong_spent = sum(r.observation.strong_cost_usd or 0.0 for r in records if r.observation)
        judge_share = observed.judge_cost_usd / strong_spent if strong_spent else None
    else:
        data = _labelled(work / "labelled.jsonl", calib)
        code, report = _cli("calibrate", *common, "--data", str(data), "--write")
        library = None  # type: ignore[assignment]
    written = float(yaml.safe_load(policy.read_text())["validators"][0]["min"])
    if library is not None:
        assert (code == 0) == (library.short_threshold is not None)
        assert code != 0 or written == library.short_threshold, (written, library.short_threshold)
    calibrated = yaml.safe_load(policy.read_text())
    rows = {}
    runs = [(f"public: {source}", "cascade" if code == 0 else "strong", written)]
    if source == "agreement" and library is not None:
        runs.append(("public: naive (same store)", "cascade", library.naive_threshold))
    for label, mode, t in runs:
        if t is None:
            continue
        policy.write_text(yaml.safe_dump({**calibrated, "mode": mode}, sort_keys=False))
        if t != written:
            write_threshold(policy, 0, t)
        out = work / f"results-{label.split(':')[1].split()[0]}.jsonl"
        test_store = f"sqlite:///{work / (out.stem + '.sqlite3')}"
        rc, _ = _cli(
            "batch", str(test), "--task", name, "--policies", pol, "--store", test_store,
            "--out", str(out),
        )  # fmt: skip
        assert rc == 0, f"{name}: test batch failed"
        results = [json.loads(line) for line in out.read_text().splitlines()]
        good = sum(bench.correct_answer(r["id"], r["model"], r["output"]) for r in results)
        rows[label] = {
            "quality": good / sum(ev.strong_ok),
            "cost": sum(r["cost_usd"] for r in results) / sum(ev.strong_cost),
            "escalation": sum(r["escalated"] for r in results) / len(results)
            if mode == "cascade"
            else 1.0,
            "threshold": f"{t:.6g}" if mode == "cascade" else "none: strong only",
            "judge": judge_share if label == f"public: {source}" else None,
        }
    return {"rows": rows, "report": report, "n": len(calib), "source": source}


def learning_curve(
    pool: PerExample, sizes: Sequence[int], target: float, delta: float, reps: int, seed: int = 1
) -> list[dict[str, Any]]:
    """Certified cost against the calibration size: ``reps`` draws of each size from the pooled
    splits, calibrated on the draw (labels: the library's exact test) and measured on the rest,
    beside the naive threshold and the oracle on the same rest."""
    rng = random.Random(seed)
    everyone = list(range(len(pool.score)))
    out = []
    for n in sizes:
        if n >= len(everyone):
            continue
        rows: dict[str, list[float]] = {"sound": [], "naive": [], "oracle": []}
        met = 0
        for _ in range(reps):
            rng.shuffle(everyone)
            cal_idx, rest = everyone[:n], everyone[n:]
            cal = calibrate(pool.samples(cal_idx), target=target, delta=delta)
            q, c, _ = pool.at(cal.short_threshold, rest)
            met += q >= target
            rows["sound"].append(c)
            rows["naive"].append(pool.at(cal.naive_threshold, rest)[1])
            base = sum(pool.strong_cost[i] for i in rest)
            rows["oracle"].append(
                sum(pool.cheap_cost[i] + (0 if pool.cheap_ok[i] else pool.strong_cost[i])
                    for i in rest) / base
            )  # fmt: skip
        out.append(
            {"n": n, "reps": reps, "met": met / reps,
             **{k: statistics.median(v) for k, v in rows.items()}}
        )  # fmt: skip
    return out


# -- output ----------------------------------------------------------------------------------


def table(results: Sequence[Mapping[str, Any]], target: float) -> str:
    lines = [
        f"Target: {target:.0%} of the strong model's accuracy (gpt-4o; GPT-4 for routellm-gsm8k)."
        " Quality and cost are shares of the strong model alone on the evaluation split.",
        "",
        "| dataset (calib / eval) | configuration | threshold(s) | escalated | quality | cost |"
        " judge cost | target |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for res in results:
        n_cal, n_eval = res["n"]
        label = f"{res['name']} ({n_cal} / {n_eval})" if n_cal else f"{res['name']} ({n_eval})"
        for conf, row in res["rows"].items():
            verdict = ""
            if conf.startswith(("sound", "naive", "ladder", "public")):
                verdict = "met" if row["quality"] >= target else "MISSED"
                if res["name"] == "mmlu" and not conf.startswith("ladder"):
                    verdict += ", cost " + ("<= 45%" if row["cost"] <= 0.45 else "> 45%")
            judge = "" if row.get("judge") is None else f"{row['judge']:.2%}"
            lines.append(
                f"| {label} | {conf} | {row['threshold']} | {row['escalation']:.1%} | "
                f"{row['quality']:.1%} | {row['cost']:.1%} | {judge} | {verdict} |"
            )
            label = ""
    return "\n".join(lines)


def merged(a: PerExample, b: PerExample) -> PerExample:
    """Two splits pooled (for the learning curve)."""
    return PerExample(
        a.score + b.score,
        a.cheap_ok + b.cheap_ok,
        a.strong_ok + b.strong_ok,
        a.cheap_cost + b.cheap_cost,
        a.strong_cost + b.strong_cost,
    )


def curve_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The learning curve as a table: median cost (share of the strong model's) by size."""
    lines = [
        "| dataset | calibration examples | draws | target met (sound) | median cost: sound |"
        " naive | oracle |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for row in res.get("curve", []):
            lines.append(
                f"| {res['name']} | {row['n']:,} | {row['reps']} | {row['met']:.0%} | "
                f"{row['sound']:.1%} | {row['naive']:.1%} | {row['oracle']:.1%} |"
            )
    return lines


def plot(results: Sequence[Mapping[str, Any]], target: float, out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return None
    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.4), squeeze=False)
    labels = list(dict.fromkeys(conf for res in results for conf in res["rows"]))
    colors = {conf: plt.get_cmap("tab20")(i % 20) for i, conf in enumerate(labels)}
    for ax, res in zip(axes[0], results, strict=True):
        if res["sweep"]:
            xs, ys = zip(*res["sweep"], strict=True)
            ax.plot(xs, ys, "-", color="0.7", label="threshold sweep (eval split)")
        for conf, row in res["rows"].items():
            marker = "s" if conf.startswith("public") else "^" if conf.startswith("ladder") else "o"
            ax.plot(row["cost"], row["quality"], marker, color=colors[conf], label=conf)
        ax.axhline(target, color="0.5", linestyle=":", linewidth=1)
        ax.set(title=res["name"], xlabel="cost (share of strong)", ylabel="quality (share)")
        ax.legend(fontsize=6)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "recorded.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def gains(d: PerExample) -> float:
    return sum(c and not s for c, s in zip(d.cheap_ok, d.strong_ok, strict=True)) / len(d.score)


def losses(d: PerExample, threshold: float) -> str:
    """Kept cheap answers that are wrong where the strong one is right, among the strong
    model's right answers, at ``threshold``."""
    right = [i for i, s in enumerate(d.strong_ok) if s]
    score = d.score
    lost = sum(not d.cheap_ok[i] and (x := score[i]) is not None and x >= threshold for i in right)
    return f"{lost}/{len(right)} ({lost / len(right):.1%})"


def notes(results: Sequence[Mapping[str, Any]], prices: Mapping[str, Any]) -> list[str]:
    lines = []
    for res in results:
        if "cals" not in res:
            continue
        ev: PerExample = res["eval_data"]
        parts = []
        for d, cal in res["cals"].items():
            sound = (
                "nothing certified"
                if cal.short_threshold is None
                else f"min {cal.short_threshold:g} (calibration quality "
                f"{cal.chosen.quality / cal.strong_quality:.1%}, p {cal.chosen.p_value:.3g})"
            )
            parts.append(f"delta {d:g}: {sound}")
        cal = next(iter(res["cals"].values()))
        naive = (
            "none"
            if cal.naive_threshold is None
            else f"{cal.naive_threshold:.6g} ({cal.naive.quality / cal.strong_quality:.1%})"
        )
        cd: PerExample = res["cal_data"]
        lines.append(
            f"- {res['name']}: calibrated on {cal.n} ({cal.method}): {'; '.join(parts)}; naive "
            f"min {naive}. gpt-4o-mini's accuracy as a share of gpt-4o's: "
            f"{res['cal_cheap_share']:.1%} on the calibration split, "
            f"{sum(ev.cheap_ok) / sum(ev.strong_ok):.1%} on the evaluation split; "
            f"gpt-4o-mini right where gpt-4o is wrong: {gains(cd):.1%} of the calibration "
            f"split, {gains(ev):.1%} of the evaluation split."
        )
        if cal.threshold is not None:
            lines[-1] += (
                f" At the delta {cal.delta:g} threshold, kept gpt-4o-mini answers wrong where"
                f" gpt-4o is right, among gpt-4o's right answers: {losses(cd, cal.threshold)}"
                f" of the calibration split, {losses(ev, cal.threshold)} of the evaluation split."
            )
        for rs in res.get("resampled", []):
            lines.append(
                f"  - resampled from the evaluation split ({rs['reps']} draws of {rs['n_cal']}, "
                f"delta {rs['delta']:g}, measured on the rest): target met in "
                f"{rs['sound_met']:.0%} of draws by the sound threshold (median cost "
                f"{rs['sound_cost']:.1%}), {rs['naive_met']:.0%} by the naive one (median cost "
                f"{rs['naive_cost']:.1%})"
            )
    lines.append(
        f"- Qwen prices derived from the recording (USD per 1M tokens, in = out): "
        f"{ {m: p['input'] for m, p in prices.items()} }"
    )
    return lines


async def main_async(args: argparse.Namespace) -> int:
    root = Path(args.data)
    if not (root / "recorded").is_dir():
        print(f"no recorded data in {root} (set CASCADE_DATA)", file=sys.stderr)
        return 2
    data = splits(root)
    prices = qwen_prices(data["mmlu"][1])
    route = load_routellm(root / "routellm-gsm8k")
    every = [r for pair in data.values() for part in pair for r in part] + route
    results = []
    reports = []
    with ReplayServer(every) as server, tempfile.TemporaryDirectory() as tmp:
        os.environ["OPENAI_BASE_URL"] = server.base_url  # for the public commands
        os.environ["OPENAI_API_KEY"] = "unused"
        bench = Bench(server, every, Path(tmp))
        for name, (calib, evalset) in data.items():
            start = time.perf_counter()
            res = await dataset(bench, name, calib, evalset, prices, args)
            if args.public:
                for source in SOURCES:
                    pub = await asyncio.to_thread(
                        public_path, bench, name, calib, evalset, res["eval_data"],
                        args.target, args.delta[0], Path(tmp), source,
                    )  # fmt: skip
                    res["rows"].update(pub["rows"])
                    reports.append((name, source, pub["n"], pub["report"]))
            if args.curve and name != "gsm8k":
                pool = merged(res["cal_data"], res["eval_data"])
                res["curve"] = learning_curve(
                    pool, (100, 300, 1000, 2000), args.target, args.delta[0], args.curve
                )
            if args.resample and len(evalset) >= 2 * len(calib):
                res["resampled"] = [
                    resample(res["eval_data"], len(calib), args.target, d, args.resample)
                    for d in args.delta
                ]
            results.append(res)
            print(f"{name}: {time.perf_counter() - start:.0f}s", file=sys.stderr)
        results.append(await routellm(bench, route))
        print(f"replayed {server.replayed} calls, {bench.errors} failed", file=sys.stderr)
    print(table(results, args.target))
    print()
    print("\n".join(notes(results, prices)))
    path = plot(results, args.target, Path(args.out))
    if path:
        print(f"- plot: {path}")
    print()
    print("\n".join(curve_lines(results)))
    for name, source, n, report in reports:
        how = "--data (labels)" if source == "labels" else f"--from-store ({source})"
        print(f"\n`cascade calibrate --task {name} {how}` on {n} examples:\n")
        print("\n".join("    " + line for line in report.splitlines()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(data_dir()), help="the shared data directory")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument(
        "--delta", type=float, nargs="+", default=[0.05, 0.1],
        help="failure probabilities to calibrate at (the first for ladders and public path)",
    )  # fmt: skip
    parser.add_argument("--resample", type=int, default=200, metavar="N", help="0: skip")
    parser.add_argument("--no-public", dest="public", action="store_false")
    parser.add_argument(
        "--curve", type=int, default=50, metavar="N", help="draws per learning-curve size; 0: skip"
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="while iterating: --delta 0.05 --resample 0 --curve 0 (public paths kept)",
    )  # fmt: skip
    parser.add_argument("--out", default=str(HERE / "out"))
    # The library never configures logging; this script is the application.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    args = parser.parse_args(argv)
    if args.quick:
        args.delta, args.resample, args.curve = [0.05], 0, 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
