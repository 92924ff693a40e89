"""Which inputs escalate: every term and feature value tested, the discoveries kept honest.

The unit is the input. For each token (a word or two-word phrase, or a feature value such as
``language=de``, ``has_code=true``, ``size>=1000``) the 2x2 table of inputs with and without
it, escalated and not, comes from the collectors' tables, per stratum (task x prompt-size
bucket x language: size tokens are stratified by language only, language tokens by size
only). A token is tested when at least ``min_count`` escalated inputs and ``3 x min_count``
stored inputs hold it, and at least ``min_count`` stored inputs do not (support on both
sides), and when the group could be claimed at all were every stored input of it
escalated (a condition on the margins only, Tarone's); tokens with the same table in every
stratum are one test. The test is the one-sided
Cochran-Mantel-Haenszel test within strata, so that a word of long or German inputs is not
taken for a trigger of its own. Benjamini-Hochberg at ``Q`` runs over every distinct test, and
each discovery's interval is at the false-coverage-adjusted level (``stats.fcr_alpha``). A
discovery is claimed only when the lower bound of that interval is above the rate of the
inputs without it.
Claimed terms that occur in nearly the same inputs are merged into one entry, listed by the
lower bound of the rate.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .collect import ALL
from .stats import benjamini_hochberg, cmh, fcr_alpha, rate_interval, rate_of, rate_of_share
from .values import Term

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .collect import PatternCollector

__all__ = ["Q", "Claim", "Found", "associations", "pass_inclusion"]

Q = 0.05  # the false discovery rate across everything tested
CHECKED = 100  # term discoveries whose interval is computed exactly (the list shows 10)
_Z_ORDER = 3.0  # the Wilson bound that only orders them
SUPPORT = 3  # x min_count: the least number of stored inputs holding a tested token
MERGE = 0.8  # share of a term's inputs that must hold an entry's first term to join it


@dataclass(frozen=True, slots=True)
class Claim:
    """A tested token whose rate is claimed: its table, test and adjusted interval."""

    token: str
    escalated: int
    kept: int  # stored inputs with it that did not escalate
    rest: float  # the calls those stand for
    z: float
    p_value: float
    q_value: float
    low: float
    high: float
    alpha: float  # 1 - the interval's confidence level
    others: float  # the estimated rate of the inputs without it

    @property
    def inputs(self) -> float:
        return self.escalated + self.rest

    @property
    def rate(self) -> float:
        return rate_of(self.escalated, self.rest)


@dataclass(frozen=True, slots=True)
class Found:
    """The associations of a set of tasks: claimed terms (merged), claimed feature tokens."""

    terms: tuple[Term, ...]
    features: tuple[Claim, ...]
    tested: int
    overall_rate: float


Part = tuple["PatternCollector", float]  # a collector and its legacy pass weight


def pass_inclusion(parts: Sequence[Part]) -> float:
    """The share of the non-escalated calls that were stored (1 with none)."""
    kept = sum(c.all.kept for c, _ in parts)
    rest = sum(c.all.rest(w) for c, w in parts)
    return kept / rest if rest > 0 else 1.0


class _Table:
    __slots__ = ("escalated", "kept", "rest", "strata")

    def __init__(self) -> None:
        self.escalated = 0
        self.kept = 0
        self.rest = 0.0
        self.strata: dict[tuple[int, object], list[int]] = {}


def _size(key: tuple[str, str]) -> object:
    return key[0]


def _language(key: tuple[str, str]) -> object:
    return key[1]


def _both(key: tuple[str, str]) -> object:
    return key


# A column of the token tables, laid out once per kind of token: its counts, its cell
# (part, stratum as the token is stratified), stored records, escalated, weight of a pass.
_Column = tuple[Counter[str], tuple[int, object], int, bool, float]


def _columns(parts: Sequence[Part], terms: bool, by: Callable[..., object]) -> list[_Column]:
    out: list[_Column] = []
    for k, (c, lw) in enumerate(parts):
        names = {sid: key for key, sid in c.strata.items()}
        counts = c.term_counts if terms else c.feature_counts
        for col, ctr in counts.items():
            sid, escalated, wk = col
            total = c.term_totals[col] if terms else ctr[ALL]
            out.append((ctr, (k, by(names[sid])), total, escalated, lw if wk is None else wk))
    return out


def _table(columns: Sequence[_Column], token: str) -> _Table:
    t = _Table()
    for ctr, key, total, escalated, weight in columns:
        n = ctr.get(token, 0)
        cell = t.strata.setdefault(key, [0, 0, 0, 0])
        cell[1] += n
        cell[3] += total
        if escalated:
            cell[0] += n
            cell[2] += total
            t.escalated += n
        else:
            t.kept += n
            t.rest += n * weight
    return t


def _summed(parts: Sequence[Part], terms: bool, escalated: bool) -> Counter[str]:
    out: Counter[str] = Counter()
    for c, _ in parts:
        for (_, e, _), ctr in (c.term_counts if terms else c.feature_counts).items():
            if e == escalated:
                out.update(ctr)
    return out


def _feature_tokens(parts: Sequence[Part]) -> list[tuple[str, Callable[..., object]]]:
    names: set[str] = set()
    for c, _ in parts:
        for ctr in c.feature_counts.values():
            names.update(ctr)
    out: list[tuple[str, Callable[..., object]]] = []
    for name in sorted(names):
        if name == ALL or name.startswith("size="):
            continue  # size= is shown, size>= is tested
        if name.startswith("size>="):
            out.append((name, _language))
        elif name.startswith("language="):
            out.append((name, _size))
        elif not name.endswith(("=false", "=none")):
            out.append((name, _both))
    return out


def associations(parts: Sequence[Part], *, min_count: int = 5) -> Found:
    """Test every supported term and feature token of ``parts`` and keep the claims."""
    esc_total = sum(c.all.escalated for c, _ in parts)
    rest_total = sum(c.all.rest(w) for c, w in parts)
    overall = rate_of(esc_total, rest_total)
    p_all = pass_inclusion(parts)
    tests: list[tuple[str, bool, _Table, float, float]] = []  # token, term?, table, z, p
    # Tokens with the same table in every stratum are one hypothesis (the same test on the
    # same counts: "say" / "anything" / "say anything" of one instruction), counted once.
    family: dict[tuple[object, ...], int] = {}  # table -> its index in the family
    members: list[int] = []  # each test's index in the family
    layouts: dict[tuple[bool, Callable[..., object]], list[_Column]] = {}

    def test(token: str, terms: bool, by: Callable[..., object], stored_total: int) -> None:
        columns = layouts.get((terms, by))
        if columns is None:
            columns = layouts[terms, by] = _columns(parts, terms, by)
        t = _table(columns, token)
        stored = t.escalated + t.kept
        if t.escalated < min_count or stored < SUPPORT * min_count:
            return
        if stored_total - stored < min_count or not claimable(stored):
            return
        z, p = 0.0, 1.0
        rest_rate = rate_of(esc_total - t.escalated, rest_total - t.rest)
        if rate_of(t.escalated, t.rest) > rest_rate:  # else p >= ~0.5: no need to compute
            z, p = cmh((a, n1, m1, n) for a, n1, m1, n in t.strata.values())
        key = (terms, by, *sorted((k, tuple(v)) for k, v in t.strata.items()))
        members.append(family.setdefault(key, len(family)))
        tests.append((token, terms, t, z, p))

    def claimable(stored: int) -> bool:
        """Whether ``stored`` inputs could support a claim at all, were every one of them
        escalated: the exact lower bound at level ``Q`` (the loosest any claim gets) of such
        a group must clear the rate the others would then have. It depends on the margins
        only (how many inputs hold the token, not how they split), so leaving the others
        out of the family keeps every test valid and spares the rest the multiplicity of
        hopeless tests (Tarone, 1990): at sample_passes 0.05 a group needs 21 inputs."""
        best = rate_of_share((Q / 2) ** (1 / stored), p_all)  # Clopper-Pearson of n of n
        return best > rate_of(max(esc_total - stored, 0), rest_total)

    features_total = sum(c.all.escalated + c.all.kept for c, _ in parts)
    for token, by in _feature_tokens(parts):
        test(token, False, by, features_total)
    escalated_terms = _summed(parts, True, True)
    kept_terms = _summed(parts, True, False)
    text_total = sum(c.term_totals.total() for c, _ in parts)
    for token, n in escalated_terms.items():
        # The summed counts decide the support before any per-stratum table is built.
        stored = n + kept_terms.get(token, 0)
        if n < min_count or stored < SUPPORT * min_count or text_total - stored < min_count:
            continue
        if claimable(stored):
            test(token, True, _both, text_total)
    if not tests:
        return Found((), (), 0, overall)
    first = {j: i for i, j in reversed(list(enumerate(members)))}
    q_family = benjamini_hochberg([tests[first[j]][4] for j in range(len(family))], Q)
    qs = [q_family[j] for j in members]
    found = [(tests[i], qs[i]) for i in range(len(tests)) if qs[i] <= Q]
    alpha = fcr_alpha(sum(q <= Q for q in q_family), len(family), Q)
    # Exact intervals cost ~1 ms each: the CHECKED discoveries with the highest approximate
    # lower bound (Wilson) are checked exactly; the report lists far fewer. Ties (terms of
    # equal tables) go by token: the order tokens were counted in follows the salted str
    # hash, and would make the same store's report differ from one run to the next.
    found.sort(key=lambda f: (-_approx_low(f[0][2], p_all, alpha), f[0][0]))
    terms_found = [f for f in found if f[0][1]][:CHECKED]
    claims: list[tuple[Claim, bool]] = []
    for (token, terms, t, z, p), q in [f for f in found if not f[0][1]] + terms_found:
        share = t.kept / t.rest if t.rest > 0 else p_all
        low, high = rate_interval(t.escalated, t.kept, share, alpha)
        others = rate_of(esc_total - t.escalated, rest_total - t.rest)
        if low > others:
            claim = Claim(token, t.escalated, t.kept, t.rest, z, p, q, low, high, alpha, others)
            claims.append((claim, terms))
    claims.sort(key=lambda ct: (-ct[0].low, -ct[0].escalated, ct[0].token))
    words = [c for c, terms in claims if terms]
    feats = tuple(c for c, terms in claims if not terms)
    return Found(_merged(parts, words), feats, len(family), overall)


def _approx_low(t: _Table, p_all: float, alpha: float) -> float:
    """A cheap stand-in for the exact lower bound, to order the discoveries (Wilson)."""
    n = t.escalated + t.kept
    if not n:
        return 0.0
    z = _Z_ORDER
    theta = t.escalated / n
    centre = (theta + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(theta * (1 - theta) / n + z * z / (4 * n * n))
    low = max(centre - half, 0.0)
    p = t.kept / t.rest if t.rest > 0 else p_all
    return low * p / (1 - low + low * p) if low < 1 else 1.0


def _merged(parts: Sequence[Part], claims: Sequence[Claim]) -> tuple[Term, ...]:
    """Claims (best first) grouped into entries of terms occurring in nearly the same inputs.

    Each claim's inputs are a bit set (a Python int) over the kept term hashes, so that the
    share of a term's inputs holding an entry's first term is one AND and a bit count.
    """
    if not claims:
        return ()
    wanted = {hash(c.token): i for i, c in enumerate(claims)}
    keys = set(wanted)
    rows: list[list[int]] = [[] for _ in claims]
    n = 0
    for c, _ in parts:
        for hashes, _escalated in c.term_docs:
            for h in keys.intersection(hashes):
                rows[wanted[h]].append(n)
            n += 1
    docs = [_bits(r, n) for r in rows]
    sizes = [len(r) for r in rows]
    entries: list[tuple[int, list[int]]] = []  # (first claim, members)
    for i, d in enumerate(docs):
        for first, members in entries:
            if sizes[i] and (d & docs[first]).bit_count() >= MERGE * sizes[i]:
                members.append(i)
                break
        else:
            entries.append((i, [i]))
    return tuple(
        _term(claims[first], [claims[j].token for j in members]) for first, members in entries
    )


def _bits(indexes: Sequence[int], n: int) -> int:
    out = bytearray((n + 7) // 8)
    for i in indexes:
        out[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(out, "little")


def _term(c: Claim, members: Sequence[str]) -> Term:
    return Term(
        term=c.token,
        z=round(c.z, 2),
        escalated=c.escalated,
        passing=round(c.rest, 1),
        inputs=round(c.inputs, 1),
        rate=c.rate,
        rate_low=c.low,
        rate_high=c.high,
        confidence=1 - c.alpha,
        p_value=c.p_value,
        q_value=c.q_value,
        members=tuple(members),
        others_rate=c.others,
    )
