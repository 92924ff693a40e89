"""Discovery on a replay: 100,000 requests from 50 prompt templates must make exactly 50 tasks.

Each template is a system prompt with variable parts of every kind the fingerprint masks
(numbers, dates, e-mail addresses, URLs, quoted values, identifiers short and long in the
same slot), filled with fresh random values per request; some templates also carry tools or
a response_format schema, and requests name one of two models per template. Prints the tasks
found, how many templates each holds (must be 1) and the fingerprinting time per request
(every request's prompt is new, so none is served by the cache).

    python benchmarks/discovery.py            # -n 100000 --templates 50
    python benchmarks/discovery.py --hostile  # masking time of 1 and 4 MB of hostile runs

``--hostile`` masks 1 MB and 4 MB of each character run that could make a mask rescan
(unclosed quotes of every kind, apostrophes, addresses, identifiers) and fails unless every
4 MB run takes at most 8 times its 1 MB run (linear: about 4, on a noisy machine up to
about 6; quadratic: 16).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import defaultdict

from cascade.discovery import fingerprint, mask

VERBS = ["Extract", "Summarise", "Classify", "Translate", "Answer", "Rewrite", "Score",
         "Route", "Label", "Check"]  # fmt: skip
OBJECTS = ["the invoice", "the support ticket", "the e-mail", "the contract", "the review",
           "the order", "the claim", "the log line", "the resume", "the question"]  # fmt: skip
SLOTS = [
    "filed on {date}", "from {email}", "see {url}", "for customer \"{name}\"",
    "account {ident}", "with {n} items", "priority {n}", "due {date}", "ref '{name}'",
    "order {ident}", "cc {email}", "total {amount} EUR",
]  # fmt: skip
NAMES = ["Ann Lee", "Bob", "Zoë Ă", "O'Brien", "Dr. Who", "Li Wei", "Müller GmbH"]


def templates(k: int, rng: random.Random) -> list[tuple[str, dict[str, object], str]]:
    out = []
    for i in range(k):
        verb, obj = VERBS[i % len(VERBS)], OBJECTS[(i // len(VERBS)) % len(OBJECTS)]
        slots = rng.sample(SLOTS, 3)
        text = f"{verb} {obj} " + ", ".join(slots) + f". Rule set {chr(65 + i % 26)}{i // 26}."
        params: dict[str, object] = {}
        if i % 3 == 0:
            params["tools"] = [{"type": "function", "function": {"name": f"tool_{i}"}}]
        if i % 5 == 0:
            params["response_format"] = {"type": "json_object"}
        out.append((text, params, ["gpt-4o", "gpt-4.1"][i % 2]))
    return out


def fill(text: str, rng: random.Random) -> str:
    day = f"{rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return text.format(
        date=day if rng.random() < 0.5 else f"{rng.randint(1, 28)}/{rng.randint(1, 12)}/2025",
        email=f"user{rng.randint(0, 10**6)}.x@mail{rng.randint(0, 99)}.example.com",
        url=f"https://host{rng.randint(0, 99)}.example/path/{rng.randint(0, 10**6)}?q=1",
        name=rng.choice(NAMES) + ("" if rng.random() < 0.5 else f" {rng.randint(1, 99)}"),
        # From 1 to 9 digits: an identifier's length must not change the task.
        ident=f"{rng.choice(['AC', 'INV-'])}{rng.randint(0, 10 ** rng.randint(1, 9))}",
        n=rng.randint(0, 10**5),
        amount=f"{rng.randint(1, 10**4)}.{rng.randint(0, 99):02d}",
    )


HOSTILE = ["\u201c", "\u201ca", '"', '"a', "'", " 'a", "'a ", "`", "`a", "a", "1:", "a@",
           "x-", "1.", "a1", "-1", "http://", "a'"]  # fmt: skip


def hostile() -> int:
    """Masking time of 1 and 4 MB of each run in HOSTILE; 1 when one grows faster than
    linearly (4 MB over 8 times 1 MB)."""
    worst = 0.0
    for unit in HOSTILE:
        took = []
        for mb in (1, 4):
            text = unit * (mb * 1_000_000 // len(unit.encode()))
            t0 = time.perf_counter()
            mask(text)
            took.append(time.perf_counter() - t0)
        worst = max(worst, took[1] / took[0])
        print(
            f"{unit!r:>10}  1 MB {took[0]:.3f} s   4 MB {took[1]:.3f} s   x{took[1] / took[0]:.1f}"
        )
    ok = worst <= 8
    print(f"worst growth from 1 to 4 MB: x{worst:.1f}; linear: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="requests")
    ap.add_argument("--templates", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--hostile", action="store_true", help="time masking of hostile runs")
    args = ap.parse_args()
    if args.hostile:
        return hostile()
    rng = random.Random(args.seed)
    tmpl = templates(args.templates, rng)
    by_task: dict[str, set[int]] = defaultdict(set)
    times = []
    for _ in range(args.n):
        i = rng.randrange(len(tmpl))
        text, params, model = tmpl[i]
        messages = [{"role": "system", "content": fill(text, rng)},
                    {"role": "user", "content": "the input"}]  # fmt: skip
        t0 = time.perf_counter()
        fp = fingerprint(messages, params, model)
        times.append(time.perf_counter() - t0)
        by_task[fp.task].add(i)
    merged = sum(1 for s in by_task.values() if len(s) > 1)
    times.sort()
    print(f"requests: {args.n:,}   templates: {len(tmpl)}   python {sys.version.split()[0]}")
    print(f"tasks found: {len(by_task)}   tasks holding more than one template: {merged}")
    print(
        f"fingerprint per request (cache miss): p50 {statistics.median(times) * 1e6:.1f} µs"
        f"   p99 {times[int(0.99 * len(times))] * 1e6:.1f} µs"
    )
    ok = len(by_task) == len(tmpl) and merged == 0
    print("exactly one task per template: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
