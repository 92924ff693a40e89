"""What inputs say: their words and two-word phrases (``terms_of``), near-duplicate groups.

The terms are tested in ``associations``. Near-duplicates: one-permutation MinHash over word
3-shingles with LSH banding. Pure Python.
"""

from __future__ import annotations

import itertools
import operator
import re
import zlib
from typing import TYPE_CHECKING

from .values import DuplicateGroup

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["Signature", "duplicate_groups", "signature", "terms_of"]

TEXT_CHARS = 2000  # of each input the word statistics read: bounds the time per record

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
_BLANK = dict.fromkeys(_STOP, "") | dict.fromkeys("abcdefghijklmnopqrstuvwxyz", "")
# Every ASCII character that is not a letter, an apostrophe or a hyphen, to a space.
_ASCII_SPACES = str.maketrans(
    {chr(c): " " for c in range(128) if not chr(c).isalpha() and chr(c) not in "'-"}
)


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
    text = _MASK.sub(" ", text).lower()
    words = _words(text)
    # Stop words and one-letter words become blanks: they join no phrase.
    keep = list(map(_BLANK.get, words, words))
    if not text.isascii() and 1 in set(map(len, keep)):
        keep = [w if len(w) > 1 else "" for w in keep]
    found = set(keep)
    found.discard("")
    # A list, not a set, of the phrases: each is then hashed into one set only.
    found.update([f"{a} {b}" for a, b in itertools.pairwise(keep) if a and b])
    return found


def _words(text: str) -> list[str]:
    """``_WORD.findall(text)`` of a lower-cased text, 4x faster on ASCII text: the regular
    expression engine walks every character in Python's ``sre``, ``str.translate`` and
    ``str.split`` in C; only tokens holding an apostrophe or a hyphen go through the
    expression (which joins letter runs across single ones only)."""
    if not text.isascii():
        return _WORD.findall(text)
    tokens = text.translate(_ASCII_SPACES).split()
    if "'" not in text and "-" not in text:
        return tokens
    # The tokens that are not all letters, found by C-level maps, are the only ones that
    # go through the expression; the runs of words between them are copied as slices.
    odd = itertools.compress(range(len(tokens)), map(operator.not_, map(str.isalpha, tokens)))
    out: list[str] = []
    done = 0
    for i in odd:
        out += tokens[done:i]
        out += _WORD.findall(tokens[i])
        done = i + 1
    out += tokens[done:]
    return out


# --- near-duplicates ---------------------------------------------------------------------

_BANDS, _ROWS = 5, 4  # 20 slots; pairs with Jaccard >= ~0.67 usually share a band
_SLOTS = _BANDS * _ROWS
_SHINGLE_WORD = re.compile(r"\w+")
# Every ASCII byte that \w does not match, to a space (bytes.translate's 256-byte table).
_NOT_WORD = bytes(c if c >= 128 or chr(c).isalnum() or c == 95 else 32 for c in range(256))
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
    text = text.lower()
    # The words as UTF-8 bytes, so that the shingles are made as bytes in C (no Python loop,
    # no encoding per shingle): on ASCII text \w+ by bytes.translate and bytes.split, 3x
    # faster than the expression.
    if text.isascii():
        words = text.encode().translate(_NOT_WORD).split()
    else:
        words = list(map(str.encode, _SHINGLE_WORD.findall(text)))
    if len(words) > 2:
        shingles: Iterable[bytes] = map(b" ".join, zip(words, words[1:], words[2:], strict=False))
    else:
        shingles = (b" ".join(words),)
    # crc32 is deterministic across runs (str hash is salted). Every step maps in C: this
    # runs for every stored escalated input. A shingle that repeats gives the same hash
    # twice, which changes no slot's smallest: no set is needed.
    hashes = sorted(map(zlib.crc32, shingles), reverse=True)
    smallest = dict(zip(map(_SLOTS.__rmod__, hashes), hashes, strict=True))  # last: smallest
    if len(smallest) == _SLOTS:
        return tuple(map(smallest.__getitem__, range(_SLOTS)))
    out = []
    for i in range(_SLOTS):
        for step in range(_SLOTS):
            h = smallest.get((i + step) % _SLOTS)
            if h is not None:
                out.append(h + (step << 32))  # the distance tags it: borrowed, not own
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
    same: int = sum(map(operator.eq, a, b))
    return same / len(a)
