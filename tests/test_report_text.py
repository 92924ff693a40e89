"""The report's text features against their plain definitions: the fast paths of
``terms_of`` and ``signature`` (translate and split, C-level maps) must give exactly what
the regular expressions they stand for give, on any text."""

from __future__ import annotations

import itertools
import re
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.report.text import TEXT_CHARS, signature, terms_of

_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
_ROLE = re.compile(r"(?m)^(system|developer|user|assistant|tool): ")
_MASK = re.compile(r"\[[A-Z_]+\]")
_STOP = {"the", "of", "and", "please", "to", "a", "i"}  # a few of the stop words
_SLOTS = 20

# Letters, the joiners of words (apostrophes, hyphens), digits, underscores, spaces, line
# breaks, a role prefix, a mask, punctuation and non-ASCII letters: every branch of the paths.
_PIECES = st.sampled_from(
    ["a", "b", "Z", "x", "the", "of", "please", "word", "'", "\u2019", "-", "--", "_", "1",
     "2.5", " ", "  ", "\n", "\t", "\x1c", "user: ", "\nassistant: ", "\nsystem: ", "[EMAIL]",
     ".", ",", "!", "é", "ß", "Д", "日", "İ", "ﬁ", "é-à", "don't"]
)  # fmt: skip
_TEXTS = st.lists(_PIECES, max_size=120).map("".join)


def reference_terms(text: str) -> set[str]:
    text = text[:TEXT_CHARS]
    parts = _ROLE.split(text)
    if len(parts) > 1:
        text = " ".join(
            c for r, c in zip(parts[1::2], parts[2::2], strict=False) if r in ("user", "assistant")
        )
    words = _WORD.findall(_MASK.sub(" ", text).lower())
    keep = ["" if w in _STOP or len(w) == 1 else w for w in words]
    return {w for w in keep if w} | {f"{a} {b}" for a, b in itertools.pairwise(keep) if a and b}


def reference_signature(text: str) -> tuple[int, ...]:
    words = re.findall(r"\w+", text.lower())
    if len(words) > 2:
        shingles = {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}
    else:
        shingles = {" ".join(words)}
    smallest: dict[int, int] = {}
    for h in (zlib.crc32(s.encode()) for s in shingles):
        smallest[h % _SLOTS] = min(h, smallest.get(h % _SLOTS, h))
    out = []
    for i in range(_SLOTS):  # an empty slot borrows the next filled one, tagged by distance
        step = next(s for s in range(_SLOTS) if (i + s) % _SLOTS in smallest)
        out.append(smallest[(i + step) % _SLOTS] + (step << 32))
    return tuple(out)


@settings(max_examples=400, deadline=None)
@given(_TEXTS)
def test_terms_are_the_words_of_the_expression(text: str) -> None:
    # Only stop words of _STOP among the pieces, so the reference knows them all.
    assert terms_of(text) == reference_terms(text)


@settings(max_examples=400, deadline=None)
@given(_TEXTS)
def test_the_signature_is_the_minhash_of_the_word_shingles(text: str) -> None:
    assert signature(text) == reference_signature(text)
