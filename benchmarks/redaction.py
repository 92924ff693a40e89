"""Redaction on hostile inputs: milliseconds per input at two sizes; linear time doubles.

    python benchmarks/redaction.py [--size 100000]

Each input is built against one pattern of ``cascade.recording.redact`` (a run that a
backtracking pattern would rescan from each of its positions). The ratio column is the
time at twice the size over the time at the size: about 2 for linear time, about 4 for
quadratic.
"""

from __future__ import annotations

import argparse
import time

from cascade.recording import redact


def hostile(n: int) -> dict[str, str]:
    """The inputs, each about ``n`` characters."""
    return {
        "parens": "(" * n,
        "digits and spaces": "1 " * (n // 2),
        "digits and dashes": "1-" * (n // 2),
        "local part without @": "a" * n + "@",
        "dotted domain": "a@" + "b." * (n // 2),
        "sk- repeated": "sk-" * (n // 3),
        "bearer then spaces": ("bearer" + " " * 50) * (n // 56),
        "eyJ- repeated": "eyJ-" * (n // 4),
        "password= then spaces": "password=" + " " * n,
        "31-char tokens": ("a1" * 15 + "b ") * (n // 32),
        "spaced iban groups": "DE89 " + "3704 " * (n // 5),
        "ssn prefixes": "123-45-" * (n // 7),
        "card groups": "4111 " * (n // 5),
        "ordinary prose": "Please call me about invoice 42, thanks. " * (n // 41),
    }


def _ms(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        redact(text)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    n = parser.parse_args().size
    small, large = hostile(n), hostile(2 * n)
    print(f"| input | {n:,} chars | {2 * n:,} chars | ratio |")
    print("|---|---|---|---|")
    for name in small:
        a, b = _ms(small[name]), _ms(large[name])
        print(f"| {name} | {a:.1f} ms | {b:.1f} ms | {b / a:.1f} |")


if __name__ == "__main__":
    main()
