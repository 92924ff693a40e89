"""The held-out check on any recorded train/test pair, through the public commands only.

    python benchmarks/heldout.py TRAIN.jsonl TEST.jsonl [--target 0.97] [--delta 0.05]

For each way of certifying a threshold (``--sources``: ``judge``, ``agreement``, ``labels``):
observe the train split with ``cascade batch`` (``mode: observe``, ``observe_sample: 1.0``,
``agreement: {comparator: judge}`` or the text comparator ``normalized``) into a SQLite store,
or write it as ``calibrate --data`` lines with each model's recorded ``correct`` flag as
``labels``; ``cascade calibrate --target T --write``; ``mode: cascade`` (``mode: strong``
when calibrate exits 1: nothing certified); the test split through ``cascade batch --out``.
Both splits are served by ``cascade.testing.ReplayServer`` (what ``cascade replay`` runs),
which answers the judge's calls from the recording's ``correct`` flags.

The recordings are files in the format of ``../shared/data/recorded/*.jsonl`` (see its
README): the confidence is the answer token's logprob for ``ModelIntrinsicLogProb`` records
and a self-verification call's P(yes) for ``AskModelConfidence`` ones. Quality is the number
of right test answers (by the recording's ``correct`` flag of the model that answered) as a
share of the strong model's number of right answers; cost is the share of what ``cascade
batch`` in ``mode: strong`` spends on the test split; "target" says whether quality >=
``--target`` held.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from cascade.cli import main as cli
from cascade.testing import ReplayServer, load_recorded, request_of

SOURCES = ("judge", "agreement", "labels")


def _cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli(list(argv))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue() + err.getvalue()


def _policy(records: list[dict[str, Any]], cheap: str, strong: str) -> dict[str, Any]:
    signal = records[0].get("conf_signal")
    source = "logprobs" if signal == "ModelIntrinsicLogProb" else "verify"
    return {
        "models": [cheap, strong],
        "params": {"temperature": 0},
        "validators": [{"type": "confidence", "source": source, "min": 0.9}],
        "agreement": {"comparator": "normalized"},
    }


def _lines(path: Path, records: list[dict[str, Any]], labels: bool = False) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            line = request_of(r)
            if labels:
                line["labels"] = {m: bool(o["correct"]) for m, o in r["models"].items()}
            f.write(json.dumps(line) + "\n")
    return path


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    train, test = load_recorded(args.train), load_recorded(args.test)
    by_tag = {request_of(r)["id"]: r for r in test}
    rows = []
    with (
        ReplayServer(train) as train_server,
        ReplayServer(test) as test_server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        key = {"OPENAI_API_KEY": "unused"}
        on_train = {**key, "OPENAI_BASE_URL": train_server.base_url}
        on_test = {**key, "OPENAI_BASE_URL": test_server.base_url}
        base = _policy(train, args.cheap, args.strong)
        task = "heldout"

        def test_split(work: Path, mode: str) -> dict[str, Any]:
            spec = yaml.safe_load((work / "policies" / f"{task}.yaml").read_text())
            spec["mode"] = mode
            (work / "policies" / f"{task}.yaml").write_text(yaml.safe_dump(spec))
            out = work / f"results-{mode}.jsonl"
            code, said = _cli(
                on_test, "batch", str(work / "test.jsonl"), "--task", task, "--policies",
                str(work / "policies"), "--store", f"sqlite:///{work / f'test-{mode}.sqlite3'}",
                "--out", str(out),
            )  # fmt: skip
            if code != 0:
                raise SystemExit(f"test batch failed:\n{said}")
            results = [json.loads(line) for line in out.read_text().splitlines()]
            right = sum(by_tag[r["id"]]["models"][r["model"]]["correct"] for r in results)
            escalated = sum(r["escalated"] for r in results) / len(results)
            return {
                "right": right,
                "cost": sum(r["cost_usd"] for r in results),
                "escalated": None if mode == "strong" else escalated,  # strong mode: none
            }

        def workdir(name: str, spec: dict[str, Any]) -> Path:
            work = Path(tmp) / name
            (work / "policies").mkdir(parents=True)
            (work / "policies" / f"{task}.yaml").write_text(yaml.safe_dump(spec))
            _lines(work / "test.jsonl", test)
            return work

        strong = test_split(workdir("strong", base), "strong")
        cheap = test_split(workdir("cheap", base), "cheap")
        for label, got in (("all-cheap", cheap), ("all-strong", strong)):
            rows.append({"method": label, "threshold": "", **got})
        for source in args.sources:
            spec = dict(base, mode="observe", observe_sample=1.0)
            if source == "judge":
                spec["agreement"] = {"comparator": "judge", "model": args.judge}
            work = workdir(source, spec)
            common = ["--task", task, "--target", str(args.target), "--delta", str(args.delta)]
            common += ["--policies", str(work / "policies"), "--write"]
            store = f"sqlite:///{work / 'observe.sqlite3'}"
            if source == "labels":
                data = _lines(work / "labelled.jsonl", train, labels=True)
                code, said = _cli(on_train, "calibrate", *common, "--data", str(data))
            else:
                trained = _lines(work / "train.jsonl", train)
                batch = ["batch", str(trained), "--task", task, "--policies"]
                done, said = _cli(on_train, *batch, str(work / "policies"), "--store", store)
                if done != 0:
                    raise SystemExit(f"observe batch failed:\n{said}")
                code, said = _cli(on_train, "calibrate", *common, "--from-store", "--store", store)
            if code not in (0, 1):
                raise SystemExit(f"calibrate failed:\n{said}")
            written = yaml.safe_load((work / "policies" / f"{task}.yaml").read_text())
            threshold = written["validators"][0]["min"] if code == 0 else "none: strong only"
            got = test_split(work, "cascade" if code == 0 else "strong")
            rows.append({"method": f"certified: {source}", "threshold": threshold, **got})
    for r in rows:
        r["quality"] = r["right"] / strong["right"]
        r["cost_share"] = r["cost"] / strong["cost"]
        certified = r["method"].startswith("certified")
        r["held"] = (r["quality"] >= args.target) if certified else None
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("train", help="recorded queries to calibrate on (JSONL)")
    parser.add_argument("test", help="recorded queries to evaluate on (JSONL)")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--cheap", default="gpt-4o-mini")
    parser.add_argument("--strong", default="gpt-4o")
    parser.add_argument("--judge", default="gpt-4o-mini", help="the judge model")
    parser.add_argument("--sources", type=lambda s: s.split(","), default=list(SOURCES))
    args = parser.parse_args(argv)
    unknown = set(args.sources) - set(SOURCES)
    if unknown:
        parser.error(f"--sources: unknown {sorted(unknown)}; choose from {list(SOURCES)}")
    rows = run(args)
    print(f"{args.train} -> {args.test}; target {args.target:.0%} of {args.strong}'s quality, "
          f"delta {args.delta:g}")  # fmt: skip
    print("\n| method | threshold | escalated | quality | cost | target |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        held = "" if r["held"] is None else ("held" if r["held"] else "MISSED")
        escalated = "-" if r["escalated"] is None else f"{r['escalated']:.1%}"
        print(
            f"| {r['method']} | {r['threshold']} | {escalated} | {r['quality']:.1%} "
            f"| {r['cost_share']:.1%} | {held} |"
        )
    return 0 if all(r["held"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
