"""Does the report name planted triggers, and are its numbers true? (issue 12)

Workloads with known ground truth: MMLU prompts (the recorded data, by path) as the
background, escalating at 10%; planted among them, each in its own share of the calls,
- a topic word that always escalates ("firmware", 4% of calls),
- a topic word that raises escalation to 60% ("voucher", 6%),
- German inputs (German multiple-choice questions, 5%), escalating at 70%,
- long inputs (several MMLU prompts in one, 1,000+ prompt tokens, 5%), escalating at 70%.
Each call becomes a record through ``cascade.recording.build_record`` (the real features,
language detection and pass sampling), goes into a memory store, and ``build_report``
reads it at its default settings (the newest 5,000 stored records per task).

Measured per (calls, sample_passes), over ``--runs`` seeds:
- recall of each trigger: the share of reports that name it, as a term entry or in a
  suggestion (German: language=de; long: a size claim);
- precision: the share of the top 10 term entries that are real associations (the true
  escalation rate of the inputs holding the term at least 1.5x the background);
- claims: every rate interval stated (term entries and suggestions) against the true rate
  of its inputs (the mean of their planted escalation probabilities): the share of
  intervals that miss it, and the largest distance of the point estimate from it.

    python benchmarks/planted.py                      # the table of benchmarks/README.md
    python benchmarks/planted.py --runs 3 --calls 3000 --passes 0.05
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

from cascade.events import Attempt, Result, Verdict
from cascade.recording import build_record
from cascade.report import build_report
from cascade.report.text import terms_of
from cascade.stores import store_from_url

DATA = Path(os.environ.get("CASCADE_DATA", Path(__file__).parents[1] / "../shared/data"))
BACKGROUND = 0.10
ALWAYS, SIXTY = "firmware", "voucher"
SHARES = {"always": 0.04, "sixty": 0.06, "german": 0.05, "long": 0.05}
RATES = {"always": 1.0, "sixty": 0.6, "german": 0.7, "long": 0.7, "none": BACKGROUND}
TEMPLATES = (
    "Context: this came up in a {w} discussion.\n\n{q}",
    "{q}\n\n(Asked by a colleague about the {w}.)",
    "Regarding the {w}: {q}",
    "I need this for my {w} notes. {q}",
)
GERMAN_Q = (
    "Welche der folgenden Aussagen über die Zellatmung ist richtig?",
    "Wie viele Seiten hat ein regelmäßiges Sechseck?",
    "Wer schrieb das Drama über den Gelehrten, der einen Pakt mit dem Teufel schließt?",
    "Welches Organ reinigt das Blut von Giftstoffen?",
    "In welchem Jahr fiel die Berliner Mauer?",
    "Was beschreibt das zweite Newtonsche Gesetz?",
    "Welche Stadt ist die Hauptstadt von Kanada?",
    "Welcher Vertrag beendete den Ersten Weltkrieg?",
    "Was ist die Ableitung der Funktion x hoch drei?",
    "Welches Gas entsteht bei der Photosynthese als Nebenprodukt?",
    "Welche Eigenschaft hat eine Primzahl?",
    "Was versteht man unter dem Begriff Inflation in der Volkswirtschaft?",
    "Welcher Planet ist der Sonne am nächsten?",
    "Wie nennt man die kleinste Einheit eines chemischen Elements?",
    "Welche Aufgabe haben die roten Blutkörperchen?",
    "Was besagt der Satz des Pythagoras über ein rechtwinkliges Dreieck?",
)
GERMAN_A = (
    "Sie findet im Zellkern statt", "Sechs", "Johann Wolfgang von Goethe", "Die Leber",
    "Im Jahr 1989", "Kraft ist gleich Masse mal Beschleunigung", "Ottawa",
    "Der Vertrag von Versailles", "Drei mal x zum Quadrat", "Sauerstoff",
    "Sie ist nur durch eins und sich selbst teilbar", "Ein allgemeiner Anstieg der Preise",
    "Der Merkur", "Das Atom", "Sie transportieren Sauerstoff", "Die Summe der Kathetenquadrate",
    "Keine der genannten Antworten", "Alle genannten Antworten", "Das hängt vom Kontext ab",
)  # fmt: skip


def prompts() -> list[tuple[str, int]]:
    rows = []
    for name in ("mmlu_qwen_oai_test", "mmlu_qwen_oai_train"):
        with open(DATA / "recorded" / f"{name}.jsonl", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                rows.append((r["user_prompt"], r["models"]["gpt-4o-mini"]["tokens_in"]))
    return rows


def german(rng: random.Random) -> tuple[str, int]:
    q = rng.choice(GERMAN_Q)
    options = rng.sample(GERMAN_A, 4)
    text = (
        "Beantworte die folgende Multiple-Choice-Frage, indem du A, B, C oder D ausgibst. "
        "Gib nichts anderes aus.\n\nFrage: " + q + "\n\nAntwortmöglichkeiten:\n"
        + "".join(f"{k}: {o}\n" for k, o in zip("ABCD", options, strict=True))
        + "\nAntwort: "
    )  # fmt: skip
    return text, len(text) // 4 + 20


def workload(n: int, rng: random.Random, base: list[tuple[str, int]]) -> list[tuple[str, str, int]]:
    """(kind, user text, prompt tokens) for ``n`` calls."""
    out = []
    for _ in range(n):
        u = rng.random()
        kind = "none"
        for k, share in SHARES.items():
            if u < share:
                kind = k
                break
            u -= share
        text, tokens = rng.choice(base)
        if kind in ("always", "sixty"):
            word = ALWAYS if kind == "always" else SIXTY
            text = rng.choice(TEMPLATES).format(w=word, q=text)
            tokens += 12
        elif kind == "german":
            text, tokens = german(rng)
        elif kind == "long":
            parts = [rng.choice(base) for _ in range(12)]
            text = "Answer each of these in turn.\n\n" + "\n\n".join(t for t, _ in parts)
            tokens = sum(k for _, k in parts)
            while tokens < 1000:
                extra, k = rng.choice(base)
                text, tokens = text + "\n\n" + extra, tokens + k
        out.append((kind, text, tokens))
    return out


def result(escalated: bool, tokens: int) -> Result:
    cheap = Attempt(
        "gpt-4o-mini", "answer", "A",
        (Verdict("confidence", not escalated, "" if not escalated else "confidence 0.9 < 0.99",
                 0.999 if not escalated else 0.9),),
        tokens, 1, 0, tokens * 0.15e-6, 0.3,
    )  # fmt: skip
    attempts = [cheap]
    if escalated:
        attempts.append(Attempt("gpt-4o", "answer", "B", (), tokens, 1, 0, tokens * 2.5e-6, 0.6))
    cost = sum(a.cost_usd or 0.0 for a in attempts)
    return Result("mmlu", attempts[-1].output, None, attempts[-1].model, escalated, True,
                  tuple(attempts), cost, tokens * 2.5e-6)  # fmt: skip


def one_run(calls: int, passes: float, seed: int, base: list[tuple[str, int]]) -> dict:
    rng = random.Random(seed)
    work = workload(calls, rng, base)
    store = store_from_url("memory://")
    start = time.time() - calls * 5.0
    truth_terms: dict[str, list[float]] = {}
    truth_flags: dict[str, list[float]] = {}
    for i, (kind, text, tokens) in enumerate(work):
        escalated = rng.random() < RATES[kind]
        messages = [{"role": "user", "content": text}]
        rec = build_record(
            result(escalated, tokens), messages, latency_s=0.5, sample_passes=passes,
            store_inputs="full", rng=rng.random, now=lambda i=i: start + i * 5.0,
        )  # fmt: skip
        store.add(rec)
        p = RATES[kind]
        for t in terms_of("user: " + text + "\n"):
            truth_terms.setdefault(t, []).append(p)
        f = rec.features
        flags = [
            f"language={f['language']}",
            f"has_code={str(f['has_code']).lower()}",
            f"has_json={str(f['has_json']).lower()}",
            f"question={str(f['question']).lower()}",
        ]
        flags += [f"size>={b}" for b in (250, 500, 1000, 2000, 4000) if tokens >= b]
        for flag in flags:
            truth_flags.setdefault(flag, []).append(p)
    store.flush()
    report = build_report(store)
    patterns = report.tasks[0].patterns
    store.close()

    def true_rate(table: dict[str, list[float]], key: str) -> float | None:
        xs = table.get(key)
        return statistics.fmean(xs) if xs else None

    named = dict.fromkeys(("always", "sixty", "german", "long"), False)
    claims: list[tuple[float, float, float, float]] = []  # point, low, high, truth
    real = []
    for t in patterns.terms[:10]:
        truth = true_rate(truth_terms, t.term)
        real.append(truth is not None and truth >= 1.5 * BACKGROUND)
        if truth is not None:
            claims.append((t.rate, t.rate_low, t.rate_high, truth))
        members = set(t.members) | {t.term}
        named["always"] |= any(ALWAYS in m for m in members)
        named["sixty"] |= any(SIXTY in m for m in members)
    for s in patterns.suggestions:
        e = s.evidence
        if s.kind == "topic":
            truth = true_rate(truth_terms, e["term"])
            members = set(e["members"])
            named["always"] |= any(ALWAYS in m for m in members)
            named["sixty"] |= any(SIXTY in m for m in members)
        elif s.kind == "feature":
            truth = true_rate(truth_flags, f"{e['feature']}={e['value']}")
            named["german"] |= e["feature"] == "language" and e["value"] == "de"
        elif s.kind == "route_by_size":
            truth = true_rate(truth_flags, f"size>={e['min_prompt_tokens']}")
            named["long"] |= e["min_prompt_tokens"] >= 500
        else:
            continue
        if truth is not None and "rate_low" in e:
            claims.append((e["escalation_rate"], e["rate_low"], e["rate_high"], truth))
    return {"named": named, "real": real, "claims": claims}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, nargs="*", default=[300, 1000, 3000, 20000])
    ap.add_argument("--passes", type=float, nargs="*", default=[0.05, 0.2, 1.0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    base = prompts()
    print(f"runs per row: {args.runs}   python {sys.version.split()[0]}")
    print(
        "| calls | sample_passes | recall: always / 60% / German / long | precision (top 10) "
        "| claims | intervals missing the truth | worst point error | s per run |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for calls in args.calls:
        for passes in args.passes:
            named = dict.fromkeys(SHARES, 0)
            real: list[bool] = []
            claims: list[tuple[float, float, float, float]] = []
            t0 = time.perf_counter()
            for run in range(args.runs):
                r = one_run(calls, passes, args.seed * 1000 + run, base)
                for k, v in r["named"].items():
                    named[k] += v
                real += r["real"]
                claims += r["claims"]
            per = (time.perf_counter() - t0) / args.runs
            recall = " / ".join(f"{named[k] / args.runs:.0%}" for k in SHARES)
            precision = f"{sum(real) / len(real):.0%}" if real else "-"
            missed = sum(not lo <= truth <= hi for _, lo, hi, truth in claims)
            worst = max((abs(p - truth) for p, _, _, truth in claims), default=0.0)
            miss = f"{missed / len(claims):.1%}" if claims else "-"
            print(
                f"| {calls:,} | {passes:g} | {recall} | {precision} | {len(claims)} | {miss} "
                f"| {worst * 100:.1f} pts | {per:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
