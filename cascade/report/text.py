"""What escalated inputs say: over-represented words and phrases, near-duplicate groups.

Words: the weighted log-odds ratio with an informative Dirichlet prior of Monroe, Colaresi
and Quinn (2008, "Fightin' Words"), escalated inputs against the others, as z-scores.
Near-duplicates: one-permutation MinHash over word 3-shingles with LSH banding.
Pure Python.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from typing import TYPE_CHECKING

from .values import DuplicateGroup, Term

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .collect import PatternCollector

__all__ = ["Signature", "duplicate_groups", "over_represented", "signature", "terms_of"]

TEXT_CHARS = 2000  # of each input the word statistics read: bounds the time per record
Z_MIN = 1.96  # two-sided 5%

_ROLE = re.compile(r"(?m)^(system|developer|user|assistant|tool): ")
_MASK = re.compile(r"\[[A-Z_]+\]")
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
_STOP_WORDS = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    out over own please same she should so some such than thank thanks that the their theirs
    them then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself hi hello dear
    regards best also get got let may might must shall us ll re ve"""
_STOP = frozenset(_STOP_WORDS.split())


def terms_of(text: str) -> set[str]:
    """The distinct words and two-word phrases of an input, lower-cased, masks and
    stop-words left out; only user and assistant turns when the input has role prefixes."""
    text = text[:TEXT_CHARS]
    parts = _ROLE.split(text)
    if len(parts) > 1:
        text = " ".join(
            content for role, content in zip(parts[1::2], parts[2::2], strict=False)
            if role in ("user", "assistant")
        )  # fmt: skip
    words = _WORD.findall(_MASK.sub(" ", text).lower())
    keep = [w if len(w) > 1 and w not in _STOP else "" for w in words]
    found = {w for w in keep if w}
    found.update(f"{a} {b}" for a, b in itertools.pairwise(keep) if a and b)
    return found


def _log_odds(
    esc: Mapping[str, float], rest: Mapping[str, float], *, min_count: int, top: int
) -> tuple[Term, ...]:
    """Terms of ``esc`` over-represented against ``rest``, by z-score, best first.

    The prior of each term is its count in both corpora together (alpha_0 = n_i + n_j).
    """

    n_i = sum(esc.values())
    n_j = sum(rest.values())
    if not n_i or not n_j:
        return ()
    a0 = n_i + n_j
    found: list[Term] = []
    for term, y_i in esc.items():
        if y_i < min_count:
            continue
        y_j = rest.get(term, 0.0)
        alpha = y_i + y_j
        others_i, others_j = n_i + a0 - y_i - alpha, n_j + a0 - y_j - alpha
        if others_i <= 0 or others_j <= 0:  # the term is all there is: nothing to contrast
            continue
        delta = math.log((y_i + alpha) / others_i) - math.log((y_j + alpha) / others_j)
        z = delta / math.sqrt(1 / (y_i + alpha) + 1 / (y_j + alpha))
        if z > Z_MIN:
            found.append(Term(term, round(z, 2), int(y_i), round(y_j, 1)))
    found.sort(key=lambda t: (-t.z, t.term))
    return tuple(found[:top])


def over_represented(
    known: Sequence[tuple[PatternCollector, float]], *, top: int, min_count: int
) -> tuple[tuple[Term, ...], dict[str, tuple[Term, ...]]]:
    """(terms over-represented in escalated inputs, the same per validator that caused them).

    ``known`` pairs each collector with its pass weight; sampled passing inputs count that
    weight each, so the comparison is against all non-escalated calls.
    """
    esc: dict[str, float] = {}
    rest: dict[str, float] = {}
    for c, w in known:
        escalated, passed, other = c.terms
        for term, n in escalated.items():
            esc[term] = esc.get(term, 0) + n
        for term, n in passed.items():
            rest[term] = rest.get(term, 0.0) + n * w
        for term, n in other.items():
            rest[term] = rest.get(term, 0.0) + n
    overall = _log_odds(esc, rest, min_count=min_count, top=top)
    by_validator: dict[str, tuple[Term, ...]] = {}
    validators = sorted({v for c, _ in known for v in c.terms_by_validator})
    for v in validators:
        mine: dict[str, float] = {}
        for c, _ in known:
            for term, n in c.terms_by_validator.get(v, {}).items():
                mine[term] = mine.get(term, 0) + n
        terms = _log_odds(mine, rest, min_count=min_count, top=top)
        if terms:
            by_validator[v] = terms
    return overall, by_validator


# --- near-duplicates ---------------------------------------------------------------------

_BANDS, _ROWS = 5, 4  # 20 slots; pairs with Jaccard >= ~0.67 usually share a band
_SLOTS = _BANDS * _ROWS
_MASK64 = (1 << 64) - 1
_SIMILAR = 0.5  # least share of equal signature slots for a candidate pair to join a group
_EXAMPLE_CHARS = 300

Signature = tuple[int, ...]


def signature(text: str) -> Signature:
    """A MinHash signature of ``text``'s word 3-shingles, one hash per shingle.

    One-permutation hashing (Li, Owen and Zhang, 2012): each shingle's hash picks its slot
    (hash mod the slot count) and each slot keeps its smallest hash, so a text costs one
    hash per shingle instead of one per shingle and slot. An empty slot (a short text)
    borrows the next filled one, tagged with the distance, as in rotation densification
    (Shrivastava and Li, 2014), so equal texts still agree in every slot.
    """
    words = re.findall(r"\w+", text.lower())
    shingles = {" ".join(words[i : i + 3]) for i in range(max(len(words) - 2, 1))}
    # crc32 is deterministic across runs (str hash is salted); the multiply spreads its
    # 32 bits over 64.
    hashes = sorted(
        ((zlib.crc32(s.encode()) * 0x9E3779B97F4A7C15) & _MASK64 for s in shingles),
        reverse=True,
    )
    smallest = {h % _SLOTS: h for h in hashes}  # the last write is the smallest
    if len(smallest) == _SLOTS:
        return tuple(smallest[i] for i in range(_SLOTS))
    out = []
    for i in range(_SLOTS):
        for step in range(_SLOTS):
            h = smallest.get((i + step) % _SLOTS)
            if h is not None:
                out.append(h + (step << 64))  # the distance tags it: borrowed, not own
                break
    return tuple(out)


def duplicate_groups(
    samples: Iterable[Sequence[tuple[str, Signature]]], *, limit: int, min_size: int = 3
) -> tuple[DuplicateGroup, ...]:
    """Groups of at least ``min_size`` near-duplicate inputs among the first ``limit``
    of ``samples`` ((input, its ``signature``) pairs, concatenated), largest first, each
    with its first input as example."""

    kept = list(itertools.islice(itertools.chain.from_iterable(samples), limit))
    docs = [doc for doc, _ in kept]
    sigs = [sig for _, sig in kept]
    parent = list(range(len(docs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for band in range(_BANDS):
        first: dict[tuple[int, ...], int] = {}
        for i, sig in enumerate(sigs):
            key = sig[band * _ROWS : (band + 1) * _ROWS]
            j = first.setdefault(key, i)
            if j != i and _agreement(sig, sigs[j]) >= _SIMILAR:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(docs)):
        groups.setdefault(root(i), []).append(i)
    found = [
        DuplicateGroup(len(members), docs[members[0]][:_EXAMPLE_CHARS])
        for members in groups.values()
        if len(members) >= min_size
    ]
    found.sort(key=lambda g: (-g.size, g.example))
    return tuple(found)


def _agreement(a: Sequence[int], b: Sequence[int]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
