"""Masking secrets and personal data in stored inputs and outputs: ``redact(text)``.

Anyone who can send a prompt controls this text, so every pattern runs in linear time:

- no quantified group holds another unbounded quantifier;
- every unbounded run is possessive (``++``, ``*+``, ``{n,}+``): once taken it is never
  given back character by character;
- a pattern that starts with a run is anchored by a lookbehind that refuses to start
  inside a run (``(?<![...])``), so each run is scanned from its first character only,
  not once from each of its positions;
- what a run must end with (a digit, a top-level domain) is checked on the match, in
  Python, instead of by backtracking.

Each of these is tested on 100,000-character adversarial inputs (``tests/test_redaction.py``)
and timed in ``benchmarks/redaction.py``.
"""

from __future__ import annotations

import re

# Tokens with a known prefix: API keys, Slack, AWS, Bearer (any case), JWTs.
_SECRET = re.compile(
    r"(?i:\bbearer)\s++[A-Za-z0-9._~+/=-]{8,}+"
    r"|(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{16,}+"
    r"|(?<![A-Za-z0-9_-])xox[abpr]-[A-Za-z0-9-]{10,}+"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]++\.[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+"
)
# password=..., passwd: ..., "secret": "...", client_secret=..., api_key=..., "access_token":
# "...", and their camelCase forms (clientSecret, apiKey, accessToken): the value, not the key.
# A key starts where a word starts, or at the capital of a camelCase part; "tokens" (a count,
# as in max_tokens) is not a token.
_ASSIGNED = re.compile(
    r"((?:(?<![A-Za-z])(?i:password|passwd|pwd|secret|token(?!s)|api[_-]?key|access[_-]?key"
    r"|private[_-]?key)|(?<=[a-z])(?:Password|Passwd|Pwd|Secret|Token(?!s)|Key))"
    r"(?i:[a-z0-9_-]{0,24}+)\"?\s*+[:=]\s*+)"
    r"(?:(\")[^\"\n]*+\"|(')[^'\n]*+'|[^\s\"',;&]++)"
)
_LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}+={0,2}")
# The local part starts where a run of its characters starts; the domain is taken whole.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)++")
_IBAN = re.compile(
    r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"
)
# Runs of digits and separators, taken whole; cards, SSNs and phones are found inside.
_NUMBERS = re.compile(r"[+(\d][\d ().-]{5,}+")
_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?!\w)"
    r"|(?<![\w+])\+\d{7,15}(?!\w)"  # +15551234567: a country code, no separators
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[./-]\d{2}[./-]\d{4}")
_TLD = re.compile(r"[A-Za-z]{2,}")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = "".join(c for c in m.group() if c.isdigit())
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn(digits) else m.group()


def _ssn(m: re.Match[str]) -> str:
    area, group, serial = m.groups()
    # Numbers the SSA never issues (000, 666, 9xx areas; 00 groups; 0000 serials).
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return m.group()
    return "[SSN]"


def _phone(m: re.Match[str]) -> str:
    text = m.group()
    digits = sum(c.isdigit() for c in text)
    marked = text.startswith("+") or "(" in text
    # Without a country code or area-code brackets, only long separated runs are phones:
    # this keeps dates, versions, IP-like and short grouped numbers untouched.
    if not 7 <= digits <= 15 or (not marked and digits < 10) or _DATE.fullmatch(text):
        return text
    return "[PHONE]"


def _numbers(m: re.Match[str]) -> str:
    text = m.group()
    if sum(map(text.count, "0123456789")) < 7:  # too few digits for any of them: C-speed
        return text
    if "-" in text:
        text = _SSN.sub(_ssn, text)
    return _PHONE.sub(_phone, _CARD.sub(_card, text))


def _long_token(m: re.Match[str]) -> str:
    token = m.group()
    # Keys mix letters and digits; a long plain word or number is left alone.
    if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
        return "[SECRET]"
    return token


def _assigned(m: re.Match[str]) -> str:
    key, quote = m.group(1), m.group(2) or m.group(3) or ""
    return f"{key}{quote}[SECRET]{quote}"  # a quoted value stays quoted: JSON stays JSON


def _email(m: re.Match[str]) -> str:
    text = m.group()
    _local, _, domain = text.partition("@")
    labels = domain.split(".")
    # The address ends at the last label that is a top-level domain (letters only).
    for end in range(len(labels) - 1, 0, -1):
        if _TLD.fullmatch(labels[end]):
            rest = ".".join(labels[end + 1 :])
            return "[EMAIL]" + ("." + rest if rest else "")
    return text


def _iban(m: re.Match[str]) -> str:
    compact = m.group().replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return m.group()
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)  # A=10 ... Z=35 (ISO 13616)
    return "[IBAN]" if int(number) % 97 == 1 else m.group()


def redact(text: str) -> str:
    """``text`` with secrets and personal data masked.

    Masked: ``[SECRET]`` for Bearer tokens (any case), OpenAI ``sk-`` keys, Slack
    ``xox[abpr]-`` tokens, AWS ``AKIA`` keys, JWTs, the values of ``password``/``passwd``/
    ``pwd``/``secret``/``token``/``api_key``/``access_key``/``private_key`` assignments (and
    camelCase keys ending so: ``clientSecret``, ``apiKey``), and long tokens mixing letters
    and digits; ``[EMAIL]``;
    ``[IBAN]`` (mod-97 checked); ``[CARD]`` (Luhn checked); ``[SSN]`` (US, ``123-45-6789``);
    ``[PHONE]`` (with a country code, with or without separators, or 10+ digits in groups).
    Linear in ``len(text)``.
    """
    lowered = text.lower()
    if "bearer" in lowered or "sk-" in text or "xox" in text or "AKIA" in text or "eyJ" in text:
        text = _SECRET.sub("[SECRET]", text)
    if any(map(lowered.__contains__, ("pass", "pwd", "secret", "token", "key"))):
        text = _ASSIGNED.sub(_assigned, text)
    text = _IBAN.sub(_iban, text)
    text = _LONG_TOKEN.sub(_long_token, text)
    if "@" in text:
        text = _EMAIL.sub(_email, text)
    return _NUMBERS.sub(_numbers, text)


__all__ = ["redact"]
