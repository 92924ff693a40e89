"""cascade learn: a model of P(escalate | input) fitted on real cascade.run records, written
beside the policy, and the start_at rule that uses it sending those inputs straight up."""

from __future__ import annotations

import json
import random
import re
import shutil
from typing import TYPE_CHECKING

import pytest

import cascade
from cascade.cli import main
from cascade.evals import write_learned
from cascade.exceptions import PolicyError
from cascade.policy import Policy, PolicySet
from cascade.recording import features, redact, render_input
from cascade.report import build_report, render
from cascade.routing import StartModel, examples_of, fit, held_out
from cascade.routing.learned import (
    FAMILIES,
    MASKS,
    VERSION,
    WINDOW,
    hashed,
    message_turns,
    stored_turns,
)
from cascade.stores import store_from_url
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    from pathlib import Path

POLICY = """# support replies
models: [gpt-4o-mini, gpt-4o]
validators:
  - {type: structure, forbid: ["UNSURE"]}  # the cheap model's give-up
sample_passes: 0.5
store_inputs: full
"""
WORDS = ("order", "shipping", "jacket", "size", "colour", "delivery", "address", "login", "phone")
REFUND = "About my order shipping jacket size colour login: please refund me"
PLAIN = "About my order shipping jacket size colour login"


def _serve(server: ScriptedServer) -> None:
    """The cheap model always gives up on refunds; the strong one always answers."""
    server.script("gpt-4o-mini", "UNSURE", match="(?i)refund")
    server.script("gpt-4o-mini", "fine").script("gpt-4o", "strong")


def _fill(
    directory: Path,
    store: str,
    calls: int,
    models: tuple[str, str] | None = None,
    store_inputs: str = "full",
) -> None:
    policy = POLICY if models is None else POLICY.replace("gpt-4o-mini, gpt-4o", ", ".join(models))
    policy = policy.replace("store_inputs: full", f"store_inputs: {store_inputs}")
    (directory / "t.yaml").write_text(policy)
    rng = random.Random(1)
    # Which passing calls are stored (sample_passes: 0.5) is drawn from the random module: a
    # seed makes the records, and so the model fitted on them, the same in every run.
    random.seed(2)
    with ScriptedServer() as server:
        if models is None:
            _serve(server)
        else:
            server.script(models[0], "UNSURE", match="(?i)refund").script(models[0], "fine")
            server.script(models[1], "strong")
        c = cascade.Cascade(directory, client=server.client(), store=store)
        for i in range(calls):
            filler = " ".join(rng.choice(WORDS) for _ in range(6))
            text = f"About my {filler}: please refund me" if i % 3 == 0 else f"About my {filler}"
            c.run("t", [{"role": "user", "content": text}])
        c.close()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A policy directory and a SQLite store of 300 real calls (a third escalate)."""
    directory = tmp_path_factory.mktemp("learn")
    _fill(directory, f"sqlite:///{directory}/s.db", 300)
    return directory


@pytest.fixture
def policies(filled: Path, tmp_path: Path) -> Path:
    shutil.copytree(filled, tmp_path / "p")
    return tmp_path / "p"


def _learn(policies: Path, *more: str) -> int:
    return main(
        ["learn", "--task", "t", "--store", f"sqlite:///{policies}/s.db", "--policies",
         str(policies), *more]
    )  # fmt: skip


def test_learn_write_then_those_inputs_start_strong_and_others_cheap(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _learn(policies, "--write") == 0
    out = capsys.readouterr().out
    assert "break-even: start at gpt-4o when P(escalate) > 0.9" in out
    assert "1 - cheap/strong" in out
    assert re.search(r"AUC 1\.000 over \d+ escalated and \d+ other held-out records;", out)
    assert "too few of one kind" not in out
    assert "money saved on the held-out calls: $" in out
    model = StartModel.model_validate_json((policies / "_t.start.json").read_text())
    assert (model.version, model.buckets, model.task) == (VERSION, 1000, "t")
    text = (policies / "t.yaml").read_text()
    assert text.startswith(POLICY)  # every byte kept, comments included
    assert 'start_at:\n  - {model: "gpt-4o", learned: "_t.start.json", above: 0.9' in text
    # The model file is no policy: the directory still checks, with task t alone.
    assert main(["check", str(policies)]) == 0
    assert "ok   t:" in capsys.readouterr().out
    assert PolicySet(policies).tasks() == ["t"]
    (policies / "t.yaml").write_text(text.replace("sample_passes: 0.5", "sample_passes: 1.0"))

    with ScriptedServer() as server:
        _serve(server)
        c = cascade.Cascade(policies, client=server.client(), store="memory://")
        routed = c.run("t", [{"role": "user", "content": REFUND}])
        plain = c.run("t", [{"role": "user", "content": PLAIN}])
        c.close()
        assert [x["model"] for x in server.calls()] == ["gpt-4o", "gpt-4o-mini"]
    above = Policy.load(policies / "t.yaml").spec.start_at[0].above
    assert routed.start_rule == 0 and routed.start_p is not None and routed.start_p > above
    assert (routed.output, routed.escalated) == ("strong", False)
    assert (plain.output, plain.start_rule, plain.start_p) == ("fine", None, None)
    extras = {r.model: r.extra for r in c.store.records(task="t")}
    assert extras["gpt-4o"]["start_at"] == 0
    assert extras["gpt-4o"]["start_p"] == pytest.approx(routed.start_p, abs=1e-6)

    # the report: one pre-routed call, its escalation per history, what it saved (estimated)
    report = build_report(c.store)
    pre = report.tasks[0].pre_routed
    assert pre is not None and (pre.calls, pre.learned) == (1, 1)
    assert pre.would_escalate == pytest.approx(routed.start_p, abs=1e-6)
    assert plain.cost_usd is not None and routed.cost_usd is not None
    # The report reads the probability as stored (six decimals); the saving is a difference of
    # near-equal costs, so it is checked against that stored value, not the unrounded one.
    cheap, strong, p = plain.cost_usd, routed.cost_usd, extras["gpt-4o"]["start_p"]
    assert pre.saved_usd == pytest.approx(cheap - (1 - p) * strong, rel=1e-6, abs=1e-15)
    table = render(report, "table")
    assert "pre-routed (start_at): 1 call (all stored) started at a stronger rung" in table
    assert "would have escalated" in table and "money saved (estimated): $" in table
    assert json.loads(render(report, "json"))["tasks"][0]["pre_routed"]["learned"] == 1


def test_an_auc_from_few_held_out_records_of_a_kind_says_so(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _learn(policies, "--holdout", "0.05") == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "AUC" in x)
    counts = re.search(r"over (\d+) escalated and (\d+) other held-out records", line)
    assert counts and min(int(counts[1]), int(counts[2])) < 10, line
    assert "(too few of one kind to tell much)" in line


def test_learning_again_replaces_its_rule_and_keeps_the_others(policies: Path) -> None:
    path = policies / "t.yaml"
    path.write_text(POLICY + "start_at:\n  - {model: gpt-4o, match: stack trace}  # by hand\n")
    assert _learn(policies, "--write") == 0
    assert _learn(policies, "--write", "--above", "0.5") == 0
    text = path.read_text()
    assert text.count("learned:") == 1 and "above: 0.5}" in text
    rules = Policy.load(path).spec.start_at
    assert [(r.match, r.learned) for r in rules] == [("stack trace", None), (None, "_t.start.json")]
    assert "# by hand" in text


def test_pre_routed_records_are_not_learned_from(policies: Path) -> None:
    records = list(store_from_url(f"sqlite:///{policies}/s.db").records(task="t"))
    examples, skipped = examples_of(records, "gpt-4o-mini", "gpt-4o")
    assert skipped == 0 and len(examples) == len(records)
    routed = [r for r in records if r.escalated][:1]
    from dataclasses import replace

    marked = [replace(routed[0], extra={"start_at": 0})]
    assert examples_of(marked, "gpt-4o-mini", "gpt-4o") == ([], 1)
    # a stored pass of a 50% sample stands for two calls
    assert {e.weight for e in examples if not e.escalated} == {2.0}


def test_the_fit_is_deterministic_and_separates_the_trigger(policies: Path) -> None:
    records = list(store_from_url(f"sqlite:///{policies}/s.db").records(task="t"))
    examples, _ = examples_of(records, "gpt-4o-mini", "gpt-4o")
    train = [e for e in examples if not held_out(e, 0.2)]
    a, b = fit(train, task="t"), fit(train, task="t")
    assert a == b
    test = [e for e in examples if held_out(e, 0.2)]
    assert test and all((a.probability(e.hashes) > 0.5) == e.escalated for e in test)


def test_too_few_records_says_so_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(tmp_path, f"sqlite:///{tmp_path}/s.db", 12)
    assert _learn(tmp_path, "--write") == 1
    assert "too few records to learn from: need at least 100" in capsys.readouterr().out
    assert (tmp_path / "t.yaml").read_text() == POLICY
    assert not (tmp_path / "_t.start.json").exists()


@pytest.mark.filterwarnings("ignore::cascade.UnknownPriceWarning")
def test_unknown_price_refuses_to_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(tmp_path, f"sqlite:///{tmp_path}/s.db", 60, models=("house-small", "house-large"))
    assert _learn(tmp_path, "--write", "--min-records", "30") == 1
    out = capsys.readouterr().out
    assert "break-even unknown: no known price of house-small, house-large" in out
    assert "nothing written" in out
    assert not (tmp_path / "_t.start.json").exists()
    assert "start_at" not in (tmp_path / "t.yaml").read_text()


def test_unknown_task_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "t.yaml").write_text(POLICY)
    code = main(["learn", "--task", "nope", "--store", "memory://", "--policies", str(tmp_path)])
    assert code == 2
    assert "no policy for task 'nope'" in capsys.readouterr().err


def _policy_with(tmp_path: Path, model: object) -> PolicySet:
    (tmp_path / "t.yaml").write_text(
        POLICY + "start_at:\n  - {model: gpt-4o, learned: _t.start.json, above: 0.9}\n"
    )
    if model is not None:
        text = model if isinstance(model, str) else json.dumps(model)
        (tmp_path / "_t.start.json").write_text(text)
    return PolicySet(tmp_path)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "start_at[0].learned: cannot read"),
        ("{not json", "invalid JSON"),
        (
            {"version": 1, "task": "t", "buckets": 2, "bias": 0, "weights": [0, 0]},
            "version: a version 1 model file: this cascade hashes other features (version 4); "
            "fit it again with `cascade learn --task t --write`",
        ),
        (
            {"version": 3, "task": "t", "buckets": 2, "bias": 0, "weights": [0, 0]},
            "fit it again with `cascade learn --task t --write`",
        ),
        (
            {
                "version": 4,
                "task": "t",
                "features": ["size"],
                "buckets": 3,
                "bias": 0,
                "weights": [0, 0],
            },
            "2 weights",
        ),
        (
            {
                "version": 4,
                "task": "t",
                "features": ["words", "page"],
                "buckets": 1,
                "bias": 0,
                "weights": [0],
            },
            "features.1",
        ),
    ],
)
def test_a_bad_model_file_is_a_policy_error_naming_the_file(
    tmp_path: Path, content: object, says: str
) -> None:
    with pytest.raises(PolicyError, match=r"t\.start\.json") as e:
        _policy_with(tmp_path, content).get("t")
    assert says in str(e.value)


def test_learned_and_above_go_together(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(POLICY + "start_at:\n  - {model: gpt-4o, learned: x.json}\n")
    with pytest.raises(PolicyError, match="learned and above go together"):
        PolicySet(tmp_path).get("t")


def test_write_learned_starts_a_list_or_refuses_a_flow_one(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(POLICY.rstrip("\n"))  # no final newline
    write_learned(path, model="gpt-4o", learned="_t.start.json", above=0.9)
    rule = '{model: "gpt-4o", learned: "_t.start.json", above: 0.9}  # cascade learn\n'
    assert path.read_text().endswith(f"store_inputs: full\nstart_at:\n  - {rule}")
    path.write_text(POLICY + "start_at: [{model: gpt-4o, match: x}]\n")
    with pytest.raises(PolicyError, match="flow style"):
        write_learned(path, model="gpt-4o", learned="_t.start.json", above=0.9)
    json_path = tmp_path / "j.json"
    json_path.write_text(
        json.dumps({"models": ["a", "b"], "start_at": [{"model": "b", "match": "x"}]})
    )
    write_learned(json_path, model="b", learned="_j.start.json", above=0.8)
    assert json.loads(json_path.read_text())["start_at"] == [
        {"model": "b", "match": "x"},
        {"model": "b", "learned": "_j.start.json", "above": 0.8},
    ]


def test_write_refuses_a_rule_that_would_cost_more_on_held_out_calls(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # above 0.01 starts nearly every call at gpt-4o, passing ones included: dearer
    assert _learn(policies, "--write", "--above", "0.01") == 1
    out = capsys.readouterr().out
    assert "pre-routing would cost more than it saves; nothing written" in out
    assert (policies / "t.yaml").read_text() == POLICY
    assert not (policies / "_t.start.json").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--buckets", "0"], "--buckets: must be 1 to 1,000,000, got 0"),
        (["--buckets", "x"], "--buckets: not a whole number: 'x'"),
        (["--above", "1.5"], "--above: need a probability in (0, 1), e.g. 0.05, got 1.5"),
        (["--holdout", "0"], "--holdout: need a probability in (0, 1), e.g. 0.05, got 0"),
    ],
)
def test_bad_options_are_refused_before_anything_is_read(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["learn", "--task", "t", "--store", "sqlite:////nonexistent/s.db", *option])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def _live(messages: list[dict[str, str]]) -> set[int]:
    return hashed(message_turns(messages), sum(len(m["content"]) for m in messages))


def _stored(messages: list[dict[str, str]], mode: str) -> set[int]:
    stored = render_input(messages, mode)  # type: ignore[arg-type]
    assert stored is not None
    return hashed(stored_turns(stored), features(messages, ())["chars"])


def test_the_fit_reads_a_stored_input_as_scoring_reads_the_live_one() -> None:
    messages = [
        {"role": "system", "content": "Classify the ticket."},
        {"role": "user", "content": "Order 12345 of 2026-11-30, card 4111 1111 1111 1111: refund?"},
        {"role": "assistant", "content": "Which order?"},
        {"role": "user", "content": "The blue one, delivered on 03.12.2026 to room 7."},
    ]
    stored = render_input(messages, "redacted")
    assert stored is not None and "[CARD]" in stored  # redaction did change the text
    chars = features(messages, ())["chars"]
    assert hashed(stored_turns(stored), chars) == _live(messages)


def test_scoring_reads_a_bounded_window_of_the_input() -> None:
    head, tail = "alpha " * 60, " omega" * 60
    plain = [{"role": "user", "content": head + "filler " * 10_000 + tail}]
    trigger = [
        {"role": "user", "content": head + "filler " * 5_000 + "refund " + "filler " * 4_999 + tail}
    ]
    assert len(plain[0]["content"]) == len(trigger[0]["content"])
    assert _live(plain) == _live(trigger)  # the middle of a long input is not read
    opened = [{"role": "user", "content": "refund " + plain[0]["content"][7:]}]
    assert _live(opened) != _live(plain)  # its first words are (a template's instruction)
    short = [{"role": "user", "content": "alpha refund omega"}]  # all of it is read
    assert _live(short) != _live([{"role": "user", "content": "alpha return omega"}])


def test_a_truncation_marker_is_not_read_as_words() -> None:
    long = [{"role": "user", "content": "word " * 10_000}]
    stored = render_input(long, "redacted")
    assert stored is not None and "[truncated" in stored
    assert "truncated" not in "".join(stored_turns(stored))


_TURNS = [
    {"role": "system", "content": "You are [SYSTEM]: classify the ticket.\nuser"},
    {"role": "user", "content": "[INST] Where is my parcel? [/INST] [A] [TODO] " + "late " * 100},
    {"role": "assistant", "content": "Which order?\n\n"},
    {"role": "tool", "content": "lookup: none"},
    {
        "role": "user",
        "content": "The [B] blue one, typed as [EMAIL] here.\n"
        + "sorry " * 60
        + "write to alice.b@example.com or BOB@mail.example.org. "
        + "thanks " * 60,
    },
]
_SHORT = [{"role": "user", "content": "Mail (alice.b@example.com) or call +1 555 123 4567: [INST]"}]


@pytest.mark.parametrize("mode", ["full", "redacted"])
@pytest.mark.parametrize(
    "messages", [_TURNS[1:2], _TURNS, _SHORT], ids=["one turn", "five messages", "short"]
)
def test_a_request_has_the_same_features_live_and_from_its_stored_record(
    mode: str, messages: list[dict[str, str]]
) -> None:
    # Bracketed capitals that redaction never writes ([INST], [A], [TODO]) are the user's
    # words; the masks it writes are no words on either side, even typed by the user; each
    # turn's stored newline is the store's, so a window over 512 characters cuts the same.
    # An e-mail address (the stored [EMAIL]) is words of neither, where it lies in the window.
    assert _stored(messages, mode) == _live(messages)
    if messages is not _SHORT:
        assert sum(len(m["content"]) for m in messages) > 2 * WINDOW
    typed = [{"role": "user", "content": "inst [INST]"}]
    assert _live(typed) != _live([{"role": "user", "content": "inst"}])


def test_a_stored_input_cut_short_keeps_the_head_of_the_live_one() -> None:
    words = " ".join(f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}" for i in range(12_000))
    messages = [{"role": "user", "content": "[INST] " + words}]
    stored = render_input(messages, "redacted")
    assert stored is not None and "[truncated" in stored  # cut at 32,768 characters
    head = messages[0]["content"][:WINDOW].rsplit(" ", 1)[0]
    # The stored end is not the live one; what both windows read of the head is the same.
    assert hashed([head], 0, ("words",)) <= _stored(messages, "redacted")
    assert hashed([head], 0, ("words",)) <= _live(messages)


def test_the_masks_dropped_are_the_ones_redaction_writes() -> None:
    text = (
        "Bearer abcdefghijklmnop sk-abcdefghijklmnopqrstuv alice@example.com "
        "GB82 WEST 1234 5698 7654 32 card 4111 1111 1111 1111 ssn 123-45-6789 "
        "call +1 555 123 4567 password=hunter2"
    )
    written = set(re.findall(r"\[[A-Z_]+\]", redact(text)))
    assert written == set(MASKS)
    words = ("words",)
    assert hashed([f"x {' '.join(MASKS)} y"], 0, words) == hashed(["x y"], 0, words)


@pytest.mark.parametrize(
    ("spaced", "glued"),
    [
        ("hello world", "hello\u00a0world"),  # a no-break space
        ("hello world", "hello\u202fworld"),  # a narrow no-break space
        ("don t", "don\u2019t"),  # a typographic apostrophe, as "don't" reads
        ("thanks", "thanks\U0001f600"),  # an emoji
        ("我喜欢猫 今天", "我喜欢猫。今天"),  # CJK punctuation
        ("a b", "a\uff0cb"),  # a full-width comma
    ],
)
def test_spaces_and_punctuation_outside_ascii_end_words(spaced: str, glued: str) -> None:
    words = ("words",)
    assert hashed([glued], 0, words) == hashed([spaced], 0, words)


def test_turns_are_read_as_their_joined_text_whatever_their_sizes() -> None:
    shapes = [
        ["a" * WINDOW, "b"],
        ["a" * (WINDOW - 1), "b " * 300],
        ["x y " * 200, "", "middle " * 1000, "", "end " * 100],
        ["short", "also short"],
        ["q " * (WINDOW // 2), "r " * (WINDOW // 2) + "s"],
    ]
    for turns in shapes:
        assert hashed(turns, 9) == hashed(["\n".join(turns)], 9), turns


@pytest.fixture(scope="module")
def hashed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A policy directory and a store of 150 real calls whose inputs are stored as sha256."""
    directory = tmp_path_factory.mktemp("learn-hash")
    _fill(directory, f"sqlite:///{directory}/s.db", 150, store_inputs="hash")
    return directory


def test_inputs_stored_as_hashes_teach_a_model_of_size_only(
    hashed_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(hashed_store, tmp_path / "p")
    policies = tmp_path / "p"
    assert _learn(policies, "--write", "--above", "0.5", "--min-records", "50") == 0
    out = capsys.readouterr().out
    usable = re.search(r"learn t: (\d+) usable records", out)
    assert usable is not None and f"{usable[1]} of them hold no input text" in out
    assert "t's policy now says store_inputs: hash" in out
    assert "size only" in out and "store_inputs: full or redacted" in out
    model = StartModel.model_validate_json((policies / "_t.start.json").read_text())
    assert model.features == ("size",)
    # Scored live on its size alone: the words of the request, which the fit never saw, do
    # not move it, and it scores a request as the fit scored its record.
    refund = [{"role": "user", "content": REFUND}]
    other = [{"role": "user", "content": "x" * len(REFUND)}]
    assert model.of_messages(refund) == model.of_messages(other)
    assert model.of_messages(refund) == model.probability(hashed([], len(REFUND), ("size",)))


def test_one_record_without_input_text_leaves_size_only_for_all(policies: Path) -> None:
    from dataclasses import replace

    records = list(store_from_url(f"sqlite:///{policies}/s.db").records(task="t"))
    examples, _ = examples_of(records, "gpt-4o-mini", "gpt-4o")
    assert {e.features for e in examples} == {FAMILIES} and all(e.text for e in examples)
    mixed = [replace(records[0], input=None), *records[1:]]
    examples, _ = examples_of(mixed, "gpt-4o-mini", "gpt-4o")
    assert {e.features for e in examples} == {("size",)}
    assert [e.text for e in examples].count(False) == 1
    assert all(len(e.hashes) == 1 for e in examples)
    assert fit(examples, task="t").features == ("size",)
