"""start_at through the real driver: the pre-routed call is recorded as such."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

import cascade
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    from pathlib import Path


def test_a_pre_routed_call_skips_the_cheap_model_and_its_record_says_so(tmp_path: Path) -> None:
    policy = {
        "models": ["gpt-4o-mini", "gpt-4o"],
        "start_at": [{"model": "gpt-4o", "match": "(?i)traceback"}],
        "sample_passes": 1.0,
    }
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
    with ScriptedServer() as server:
        server.script("gpt-4o", "strong").script("gpt-4o-mini", "cheap")
        c = cascade.Cascade(tmp_path, client=server.client(), store="memory://")
        routed = c.run("t", [{"role": "user", "content": "Explain this Traceback"}])
        plain = c.run("t", [{"role": "user", "content": "Hello"}])
        c.close()
        assert [x["model"] for x in server.calls()] == ["gpt-4o", "gpt-4o-mini"]
    assert (routed.output, routed.start_rule, routed.escalated) == ("strong", 0, False)
    assert (plain.output, plain.start_rule) == ("cheap", None)
    records = sorted(c.store.records(task="t"), key=lambda r: r.model)
    assert [r.extra.get("start_at") for r in records] == [0, None]
