"""Discovery on a replay: 100,000 requests from 50 prompt templates must make exactly 50 tasks.

Each template is a system prompt with variable parts of every kind the fingerprint masks
(numbers, dates, e-mail addresses, URLs, quoted values, long identifiers), filled with fresh
random values per request; some templates also carry tools or a response_format schema, and
requests name one of two models per template. Prints the tasks found, how many templates each
holds (must be 1) and the fingerprinting time per request (every request's prompt is new, so
none is served by the cache).

    python benchmarks/discovery.py            # -n 100000 --templates 50
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import defaultdict

from cascade.discovery import fingerprint

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
        ident=f"AC{rng.randint(10**6, 10**9)}",
        n=rng.randint(0, 10**5),
        amount=f"{rng.randint(1, 10**4)}.{rng.randint(0, 99):02d}",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="requests")
    ap.add_argument("--templates", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
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
