"""Redaction: what is masked, what is left, linear on hostile input; store_outputs end to end."""

from __future__ import annotations

import hashlib
import http.client
import json
from typing import TYPE_CHECKING, Any

import pytest
import yaml

import cascade
from cascade.dashboard import create_app
from cascade.events import Attempt, Observation, Result, Verdict
from cascade.proxy import ProxyServer
from cascade.recording import REDACTED_INPUT_CHARS, build_record, redact, stored_output
from cascade.stores import MemoryStore
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    from pathlib import Path

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +15551234567 now", "call [PHONE] now"),
        ("call +447946095800.", "call [PHONE]."),
        ("IBAN DE89 3704 0044 0532 0130 00 ok", "IBAN [IBAN] ok"),
        ("IBAN GB82WEST12345698765432.", "IBAN [IBAN]."),
        ("pay FR1420041010050500013M02606", "pay [IBAN]"),
        ("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKl ok", "slack [SECRET] ok"),
        ("slack xoxp-1234-5678-abcdef", "slack [SECRET]"),
        ("authorization: bearer abcdef0123456789", "authorization: [SECRET]"),
        ("AUTHORIZATION: BEARER abcdef0123456789", "AUTHORIZATION: [SECRET]"),
        ("ssn 078-05-1120 on file", "ssn [SSN] on file"),
        ("password=hunter2&user=bob", "password=[SECRET]&user=bob"),
        ("passwd: s3cr3t! next", "passwd: [SECRET] next"),
        ("PASSWORD = 'pa ss'", "PASSWORD = '[SECRET]'"),
        ('{"password": "hunter 2", "n": 1}', '{"password": "[SECRET]", "n": 1}'),
        ("secret=abc client_secret=def", "secret=[SECRET] client_secret=[SECRET]"),
        ('{"clientSecret": "abc def"}', '{"clientSecret": "[SECRET]"}'),
        ("apiKey=xyz123 next", "apiKey=[SECRET] next"),
        ("api-key: foo", "api-key: [SECRET]"),
        ('{"access_token": "ya29.a0AfH6"}', '{"access_token": "[SECRET]"}'),
        ("refreshToken=zzz; path=/", "refreshToken=[SECRET]; path=/"),
        ('PRIVATE_KEY="-----BEGIN KEY-----"', 'PRIVATE_KEY="[SECRET]"'),
        (f"token {JWT} end", "token [SECRET] end"),
        # what was masked before still is
        ("mail bob.smith+x@mail.example.co.uk now", "mail [EMAIL] now"),
        ("call (415) 555-0100 today", "call [PHONE] today"),
        ("card 4111 1111 1111 1111 exp", "card [CARD] exp"),
        ("key sk-proj-AbCdEf0123456789xyzXYZ ok", "key [SECRET] ok"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc", "Authorization: [SECRET]"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [SECRET]"),
    ],
)
def test_masks(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a bearer of bad news",
        "reset your password by mail",
        "IBAN DE89 3704 0044 0532 0130 01 has a wrong check",  # mod 97 fails
        "ssn 000-12-3456 and 666-12-3456 are never issued",
        "call +1 now, or 911",
        "Order 12345 shipped on 2024-03-15 for 1,234.56 dollars",
        "ISBN 978-3-16-148410-0",
        "version 1.2.3-4 of eyJ",
        "max_tokens=500, tokens: 1000",  # a count of tokens is not a token
        "the key fields: monkey=banana",
    ],
)
def test_leaves_ordinary_text(text: str) -> None:
    assert redact(text) == text


N = 100_000
HOSTILE = {
    "parens": "(" * N,
    "digits and spaces": "1 " * (N // 2),
    "digits and dashes": "1-" * (N // 2),
    "plus digits": "+1" * (N // 2),
    "local part without @": "a" * N + "@",
    "dotted local part": "a." * (N // 2) + "@",
    "dotted domain": "a@" + "b." * (N // 2),
    "at signs": "a@" * (N // 2),
    "sk- repeated": "sk-" * (N // 3),
    "xoxb- repeated": "xoxb-" * (N // 5),
    "bearer then spaces": ("bearer" + " " * 50) * (N // 56),
    "eyJ- repeated": "eyJ-" * (N // 4),
    "eyJ. repeated": "eyJa." * (N // 5),
    "password= repeated": "password=" * (N // 9),
    "password= then spaces": "password=" + " " * N,
    "unclosed quotes": 'password="' * (N // 10),
    "camelCase keys": "aToken" * (N // 6),
    "camelCase key then spaces": "aSecret" + " " * N,
    "api_key= repeated": "api_key=" * (N // 8),
    "31-char tokens": ("a1" * 15 + "b ") * (N // 32),
    "iban prefixes": "DE89" * (N // 4),
    "spaced iban groups": "DE89 " + "3704 " * (N // 5),
    "ssn prefixes": "123-45-" * (N // 7),
    "card groups": "4111 " * (N // 5),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_100k_inputs_take_linear_time(name: str) -> None:
    """Each of these took quadratic time in at least one backtracking pattern (30,000 ``(``
    took 5.6 s before); linear, each is a few tens of milliseconds (benchmarks/redaction.py).
    A return at all is the test: a quadratic pattern would run for minutes."""
    text = HOSTILE[name]
    out = redact(text)
    assert isinstance(out, str) and len(out) <= len(text) + 16


def test_a_hostile_prompt_of_parentheses_is_stored_cut_and_masked() -> None:
    hostile = "(" * 30_000 + " call +15551234567"
    r = build_record(_result("echo"), [{"role": "user", "content": hostile}], latency_s=0.1)
    assert r.input is not None and "+15551234567" not in r.input
    huge = "x " * REDACTED_INPUT_CHARS + "mail bob@example.com"
    cut = build_record(_result("echo"), [{"role": "user", "content": huge}], latency_s=0.1)
    assert cut.input is not None and "bob@example.com" not in cut.input
    assert cut.input.endswith(
        f"…[truncated {len('user: ' + huge) + 1 - REDACTED_INPUT_CHARS} chars]"
    )


# --- store_outputs ---------------------------------------------------------------------------

SECRET_OUTPUT = (
    'Sure: {"email": "jane@example.com", "phone": "+15551234567", "key": "sk-abcdefghijklmnop1234"}'
)


def _attempt(output: str, model: str = "gpt-4o-mini") -> Attempt:
    return Attempt(
        model=model,
        purpose="answer",
        output=output,
        verdicts=(Verdict("schema", False, "nope"),),
        prompt_tokens=1,
        completion_tokens=1,
        cached_tokens=0,
        cost_usd=0.0,
        latency_s=0.1,
    )


def _result(output: str) -> Result:
    attempts = (_attempt(output), _attempt(output, "gpt-4o"))
    return Result(
        task="t",
        output=output,
        parsed=None,
        model="gpt-4o",
        escalated=True,
        ok=True,
        attempts=attempts,
        cost_usd=0.0,
        baseline_cost_usd=0.0,
    )


def _outputs(**kw: Any) -> list[str]:
    r = build_record(
        _result(SECRET_OUTPUT), [{"role": "user", "content": "x"}], latency_s=0.1, **kw
    )
    return [a.output for a in r.attempts]


def test_outputs_are_stored_redacted_by_default() -> None:
    expected = 'Sure: {"email": "[EMAIL]", "phone": "[PHONE]", "key": "[SECRET]"}'
    assert _outputs() == [expected, expected]


def test_store_outputs_full_hash_and_none() -> None:
    assert _outputs(store_outputs="full") == [SECRET_OUTPUT] * 2
    digest = "sha256:" + hashlib.sha256(SECRET_OUTPUT.encode()).hexdigest()
    assert _outputs(store_outputs="hash") == [digest] * 2
    assert _outputs(store_outputs="none") == ["", ""]
    with pytest.raises(ValueError, match="store_outputs"):
        stored_output("x", "everything", 10)  # type: ignore[arg-type]


def test_a_secret_across_the_cut_is_masked_not_kept_in_part() -> None:
    text = "a" * 95 + " card 4111 1111 1111 1111 and more"
    cut = stored_output(text, "redacted", 100)
    assert "4111" not in cut and cut.endswith(f"…[truncated {len(text) - 100} chars]")
    assert stored_output(text, "full", 100).startswith("a" * 95 + " card")


def test_observation_outputs_are_stored_as_store_outputs_says() -> None:
    seen = Observation(
        decision="accept",
        reasons=(),
        scores={},
        agree=True,
        comparator="exact",
        cheap_output=SECRET_OUTPUT,
        strong_output=SECRET_OUTPUT * 100,
    )
    r = build_record(
        _result(SECRET_OUTPUT), [], latency_s=0.1, observation=seen, stored_output_chars=500
    )
    assert r.observation is not None
    for text in (r.observation.cheap_output, r.observation.strong_output):
        assert "jane@example.com" not in text and "[EMAIL]" in text
    assert r.observation.strong_output.endswith("chars]")


def test_a_model_echoing_the_prompt_does_not_undo_its_redaction(tmp_path: Path) -> None:
    """Through the cascade, the store and the dashboard that reads it."""
    prompt = "My card is 4111 1111 1111 1111, mail me at jane@example.com"
    (tmp_path / "t.yaml").write_text(
        yaml.safe_dump({"models": ["gpt-4o-mini", "gpt-4o"], "sample_passes": 1.0})
    )
    store = MemoryStore()
    with ScriptedServer() as server:
        server.script("gpt-4o-mini", f"You said: {prompt}")
        c = cascade.Cascade(tmp_path, client=server.client(), store=store)
        assert c.run("t", [{"role": "user", "content": prompt}]).output.endswith(prompt)
        store.flush()
    (record,) = store.records()
    stored = json.dumps([record.input, [a.output for a in record.attempts]])
    assert "4111" not in stored and "jane@example.com" not in stored
    assert "You said: My card is [CARD], mail me at [EMAIL]" in record.attempts[0].output
    key = "dash-key-0123456789"
    with ProxyServer(create_app(store, keys=(key,), cache_s=0, background=False)) as dash:
        conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=10)
        conn.request("GET", "/calls?task=t", headers={"authorization": f"Bearer {key}"})
        response = conn.getresponse()
        page = response.read().decode()
        conn.close()
    assert response.status == 200 and "You said: My card is [CARD]" in page
    assert "4111" not in page and "jane@example.com" not in page


def test_a_secret_cut_by_the_redaction_window_is_not_kept_in_part_when_masks_shorten_the_text():
    # Forty 41-character words that mask to "[SECRET]"-sized tokens pull text from past the
    # window (2,000 + 256 characters) into the kept 2,000; a key split by the window's end
    # must not come with it.
    words = ("a1" * 20 + " ") * 40
    text = words + "word " * ((2256 - len(words) - 12) // 5)
    text += " " * (2244 - len(text)) + "sk-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + " more" * 50
    stored = stored_output(text, "redacted", 2000)
    assert "sk-ABC" not in stored and "[truncated" in stored
    assert stored_output("a" * 3000, "redacted", 2000) == "…[truncated 1000 chars]"
