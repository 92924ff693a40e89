"""The cascade on real recorded model outputs: calibrate on one split, measure on the other.

    python benchmarks/recorded.py            # data: $CASCADE_DATA or ../shared/data

Every number comes from the FULL cascade (``Cascade.arun``: drivers, engine, validators,
pricing) talking HTTP to ``ReplayServer``, which answers each request with what the asked
model really answered when the data was recorded (see ../shared/data/README.md):

- MMLU: ``confidence`` from the answer token's logprob; TriviaQA, GSM8K: ``confidence``
  from self-verification (a follow-up "is this correct?" call, whose P(yes) was recorded).
- Prices: gpt-4o / gpt-4o-mini from the built-in table; the Qwen models' price per token is
  derived from the recording (cost_usd / tokens on MMLU, where no verification was billed).
- The threshold is calibrated on the train split (GSM8K has none: its queries are split by
  idx, even for calibration, odd for evaluation) with ``cascade.calibrate`` (Learn then
  Test, delta 0.05), for ``--target`` (0.97) of gpt-4o's accuracy; "naive" is the threshold
  whose calibration-sample quality just meets the target.
- Ladders (gpt-4o-mini -> qwen2.5-72b -> gpt-4o, and all four models) get one threshold per
  rung (a ``confidence_by_model`` validator registered here), certified jointly along
  threshold paths tested by fixed-sequence at delta / (number of paths), the cheapest
  certified configuration kept; with a few hundred calibration examples only one path (the
  same min on every rung) has the power to certify anything.
- routellm-gsm8k (Mixtral-8x7B vs GPT-4) has no confidence signal: the cascade checks only
  the "#### answer" structure; reported with the all-cheap / all-strong / oracle points.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cascade import Cascade, Policy, PolicySet, Result, register_validator
from cascade._replay import (
    ROUTELLM_CHEAP,
    ROUTELLM_STRONG,
    ReplayServer,
    load_recorded,
    load_routellm,
    record_tag,
)
from cascade.calibrate import Sample, calibrate, fixed_sequence
from cascade.evaluate import Example, run_mode
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
        self.inner = {
            m: build_validator("confidence", "confidence", {**options, "min": v}, policy_dir=None)
            for m, v in mins.items()
        }
        self.default = build_validator(
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
    out = []
    for r in records:
        msgs = [{"role": "user", "content": r["user_prompt"]}]
        if r.get("system_prompt"):
            msgs.insert(0, {"role": "system", "content": r["system_prompt"]})
        out.append(Example(record_tag(r), msgs, "", {"user": record_tag(r)}))
    return out


# -- running the cascade ---------------------------------------------------------------------


class Bench:
    """Runs policies on the replay server and scores answers from the recording."""

    def __init__(self, server: ReplayServer, records: Sequence[Mapping[str, Any]], tmp: Path):
        self.server, self.tmp = server, tmp
        self.by_tag = {record_tag(r): r for r in records}
        self.client = server.async_client()

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
        return await run_mode(cascade, policy, exs, mode, concurrency=CONCURRENCY)

    def correct(self, ex: Example, result: Any) -> bool:
        if not isinstance(result, Result):
            return False
        out = self.by_tag[ex.id]["models"][result.model]
        assert result.output == out["answer"], (ex.id, result.model)
        return bool(out["correct"])


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
) -> tuple[list[float], float, float]:
    """Per-rung thresholds certified (Learn then Test over a family of paths) at least cost."""
    n = len(strong["ok"])
    scores = sorted({s for s in rungs[0]["score"] if s is not None}, reverse=True)
    step = max(1, len(scores) // 60)
    grid = [math.inf, *scores[::step]]
    # One path per exponent profile (rung k's min = t ** w_k), each tested at delta / paths.
    # At a few hundred calibration examples only the single profile (the same min on every
    # rung) keeps enough power; pass more profiles when there is more data.
    profiles = (
        [(1.0,) * (len(rungs) - 1)]
        if len(strong["ok"]) < 2000
        else list(itertools.product((1.0, 0.25, 4.0), repeat=len(rungs) - 1))
    )
    best = ([math.inf] * len(rungs), math.inf, 0.0)
    for prof in profiles:
        configs = [[t, *[t**w if t != math.inf else t for w in prof]] for t in grid]
        losses = []
        for mins in configs:
            outs = [walk(rungs, strong, mins, i) for i in range(n)]
            losses.append([target * strong["ok"][i] - outs[i][0] for i in range(n)])
        _, certified = fixed_sequence(losses[1:], -1.0, target, delta / len(profiles))
        mins = configs[certified]
        mean_cost = sum(walk(rungs, strong, mins, i)[1] for i in range(n)) / n
        if mean_cost < best[1]:
            quality = sum(walk(rungs, strong, mins, i)[0] for i in range(n)) / n
            best = (mins, mean_cost, quality)
    return best


async def dataset(
    bench: Bench,
    name: str,
    calib: list[dict[str, Any]],
    evalset: list[dict[str, Any]],
    prices: Mapping[str, Any],
    target: float,
    delta: float,
) -> dict[str, Any]:
    cx, ex = examples(calib), examples(evalset)
    base = bench.policy(name, [MINI, G4O], None, prices)
    strong_c = await bench.run(base, cx, "strong")
    strong = {
        "ok": [bench.correct(e, r) for e, r in zip(cx, strong_c, strict=True)],
        "cost": [cost(r) for r in strong_c],
    }
    rungs = {m: await rung_data(bench, name, m, cx, prices) for m in (MINI, C32, Q72)}
    samples = [
        Sample(
            rungs[MINI]["score"][i],
            rungs[MINI]["ok"][i],
            strong["ok"][i],
            rungs[MINI]["cost"][i],
            strong["cost"][i],
            baseline_cost=cost(strong_c[i], verify=False),
        )
        for i in range(len(cx))
    ]
    cal = calibrate(samples, target=target, delta=delta)
    # evaluation split: every point through the full cascade
    cheap_e = await bench.run(base, ex, "cheap")
    strong_e = await bench.run(base, ex, "strong")
    ok_c = [bench.correct(e, r) for e, r in zip(ex, cheap_e, strict=True)]
    ok_s = [bench.correct(e, r) for e, r in zip(ex, strong_e, strict=True)]
    base_cost = sum(cost(r, verify=False) for r in strong_e)
    strong_acc = sum(ok_s) / len(ex)
    rows: dict[str, dict[str, float]] = {}

    def point(label: str, oks: Sequence[bool], costs: Sequence[float], esc: float) -> None:
        rows[label] = {
            "quality": sum(oks) / len(ex) / strong_acc,
            "cost": sum(costs) / base_cost,
            "escalation": esc,
        }

    point("all-cheap", ok_c, [cost(r, verify=False) for r in cheap_e], 0.0)
    point("all-strong", ok_s, [cost(r, verify=False) for r in strong_e], 1.0)
    wrong = [not o for o in ok_c]
    point(
        "oracle",
        [c or s for c, s in zip(ok_c, ok_s, strict=True)],
        [
            cost(c, verify=False) + (cost(s, verify=False) if w else 0.0)
            for c, s, w in zip(cheap_e, strong_e, wrong, strict=True)
        ],
        sum(wrong) / len(ex),
    )
    thresholds = {"sound": cal.short_threshold, "naive": cal.naive_threshold}
    for label, t in thresholds.items():
        if t is None:
            continue
        res = await bench.run(bench.policy(name, [MINI, G4O], [t], prices), ex, "cascade")
        point(
            f"cascade ({label})",
            [bench.correct(e, r) for e, r in zip(ex, res, strict=True)],
            [cost(r) for r in res],
            sum(r.escalated for r in res) / len(ex),
        )
    sweep = []
    for t in sorted({s for s in (score(r) for r in cheap_e) if s is not None}):
        keep = [score(c) is not None and score(c) >= t for c in cheap_e]  # type: ignore[operator]
        q = sum(oc if k else os_ for oc, os_, k in zip(ok_c, ok_s, keep, strict=True))
        c = sum(
            cost(ch) + (0 if k else cost(st))
            for ch, st, k in zip(cheap_e, strong_e, keep, strict=True)
        )
        sweep.append((c / base_cost, q / len(ex) / strong_acc))
    ladders = {}
    for lname, models in LADDERS.items():
        mins, _, _ = certify_ladder([rungs[m] for m in models[:-1]], strong, target, delta)
        if math.isinf(mins[0]):  # nothing certified: the ladder would only add cost
            continue
        res = await bench.run(bench.policy(name, models, mins, prices), ex, "cascade")
        point(
            f"ladder {lname}",
            [bench.correct(e, r) for e, r in zip(ex, res, strict=True)],
            [cost(r) for r in res],
            sum(r.escalated for r in res) / len(ex),
        )
        ladders[lname] = mins
    return {
        "name": name,
        "n": (len(cx), len(ex)),
        "cal": cal,
        "rows": rows,
        "sweep": sweep,
        "ladders": ladders,
        "thresholds": thresholds,
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
        ("cascade (structure)", "cascade"),
    ):
        rows[label] = {
            "quality": sum(oks[m]) / len(ex) / strong_acc,
            "cost": sum(cost(r) for r in runs[m]) / base_cost,
            "escalation": sum(r.escalated for r in runs[m]) / len(ex),
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
    }
    return {
        "name": "routellm-gsm8k",
        "n": (0, len(ex)),
        "rows": rows,
        "sweep": [],
        "ladders": {},
        "thresholds": {},
        "cal": None,
    }


# -- output ----------------------------------------------------------------------------------


def table(results: Sequence[Mapping[str, Any]], target: float) -> str:
    lines = [
        f"Target: {target:.0%} of the strong model's accuracy (gpt-4o; GPT-4 for routellm-gsm8k)."
        " Quality and cost are shares of the strong model alone on the evaluation split.",
        "",
        "| dataset (calib / eval) | configuration | threshold(s) | escalated | quality | cost |",
        "|---|---|---|---:|---:|---:|",
    ]
    for res in results:
        n_cal, n_eval = res["n"]
        label = f"{res['name']} ({n_cal} / {n_eval})" if n_cal else f"{res['name']} ({n_eval})"
        for conf, row in res["rows"].items():
            t = ""
            if conf.startswith("cascade (") and conf[9:-1] in res["thresholds"]:
                t = f"{res['thresholds'][conf[9:-1]]:.6g}"
            elif conf.startswith("ladder "):
                t = " / ".join(f"{x:.4g}" for x in res["ladders"][conf[7:]][:-1])
            lines.append(
                f"| {label} | {conf} | {t} | {row['escalation']:.1%} | "
                f"{row['quality']:.1%} | {row['cost']:.1%} |"
            )
            label = ""
    return "\n".join(lines)


def plot(results: Sequence[Mapping[str, Any]], out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return None
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        if res["sweep"]:
            xs, ys = zip(*res["sweep"], strict=True)
            ax.plot(xs, ys, "-", color="0.7", label="threshold sweep (eval split)")
        for conf, row in res["rows"].items():
            ax.plot(row["cost"], row["quality"], "o", label=conf)
        ax.axhline(0.97, color="0.5", linestyle=":", linewidth=1)
        ax.set(title=res["name"], xlabel="cost (share of strong)", ylabel="quality (share)")
        ax.legend(fontsize=6)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "recorded.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


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
    with ReplayServer(every) as server, tempfile.TemporaryDirectory() as tmp:
        bench = Bench(server, every, Path(tmp))
        for name, (calib, evalset) in data.items():
            start = time.perf_counter()
            results.append(
                await dataset(bench, name, calib, evalset, prices, args.target, args.delta)
            )
            print(f"{name}: {time.perf_counter() - start:.0f}s", file=sys.stderr)
        results.append(await routellm(bench, route))
        print(f"replayed {server.replayed} calls", file=sys.stderr)
    print(table(results, args.target))
    print()
    for res in results:
        cal = res["cal"]
        if cal is not None:
            sound = (
                "none certified"
                if cal.short_threshold is None
                else (
                    f"{cal.short_threshold:g} (calibration quality "
                    f"{cal.chosen.quality / cal.strong_quality:.1%})"
                )
            )
            naive = (
                "none"
                if cal.naive_threshold is None
                else (f"{cal.naive_threshold:.6g} ({cal.naive.quality / cal.strong_quality:.1%})")
            )
            ladders = (
                ", ".join(
                    f"{k}: {' / '.join(f'{x:.4g}' for x in v[:-1])}"
                    for k, v in res["ladders"].items()
                )
                or "none certified"
            )
            print(
                f"- {res['name']}: calibrated on {cal.n}: sound min {sound}; naive min "
                f"{naive}; ladders {ladders}"
            )
    print(
        f"- Qwen prices derived from the recording (USD per 1M tokens, in = out): "
        f"{ {m: p['input'] for m, p in prices.items()} }"
    )
    path = plot(results, Path(args.out))
    if path:
        print(f"- plot: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(data_dir()), help="the shared data directory")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--out", default=str(HERE / "out"))
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
