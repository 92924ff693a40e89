"""The language guess before CLD2 (a stop-word count), kept for ``overhead.py --compare-language``.

Benchmarks only: it measures what the per-call language detection costs against this.
"""

from __future__ import annotations

import re

_SCRIPTS = (
    ("cyrillic", re.compile(r"[\u0400-\u04ff]")),
    ("cjk", re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")),
    ("arabic", re.compile(r"[\u0600-\u06ff]")),
    ("hebrew", re.compile(r"[\u0590-\u05ff]")),
    ("greek", re.compile(r"[\u0370-\u03ff]")),
    ("devanagari", re.compile(r"[\u0900-\u097f]")),
    ("thai", re.compile(r"[\u0e00-\u0e7f]")),
    ("latin", re.compile(r"[A-Za-z\u00c0-\u024f]")),
)
_STOP_WORDS = {
    code: frozenset(words.split())
    for code, words in (
        ("en", "the and is are of to in that what with for this how"),
        ("es", "el la los las que es y de en por para una con cómo"),
        ("fr", "le la les est et de des que une pour dans avec qui"),
        ("de", "der die das und ist nicht ein eine mit für ich wie"),
        ("pt", "o os que não uma com para do da em são como você"),
        ("it", "il lo gli che è e di una per con non sono come"),
    )
}
_SAMPLE = 600  # characters of the last user message the language guess looks at


def language(text: str) -> str:
    """A cheap guess: a language code for latin text with clear stop words, else the script."""
    sample = text[:_SAMPLE]
    if sample.isascii():
        script = "latin" if any(c.isalpha() for c in sample) else "none"
    else:
        counts = [(len(rx.findall(sample)), name) for name, rx in _SCRIPTS]
        best, script = max(counts)
        script = script if best else "none"
    if script != "latin":
        return script
    words = sample.lower().split()
    hits = max((len(_STOP_WORDS[code].intersection(words)), code) for code in _STOP_WORDS)
    return hits[1] if hits[0] >= 2 else "latin"
