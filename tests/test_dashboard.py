"""The dashboard over HTTP: figures equal to the report's JSON, the key, escaping, filters.

The store is filled by real ``Cascade.run`` calls against ``cascade.testing.ScriptedServer``;
the dashboard is served by uvicorn (``ProxyServer``) and read with ``http.client``.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from html import unescape
from typing import TYPE_CHECKING, Any

import pytest
import yaml

import cascade
from cascade.cli import main
from cascade.dashboard import create_app, snapshot_html
from cascade.dashboard.calls import CallFilter, find_calls
from cascade.proxy import ProxyConfig, ProxyServer
from cascade.proxy import create_app as create_proxy
from cascade.report import build_report, render, report_to_dict
from cascade.stores import MemoryStore
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from cascade.events import CallRecord

KEY = "dash-key-0123456789"
SCHEMA = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}
EVIL = "<script>alert('x')</script>"


def fill(store: MemoryStore, tmp_path: Path, n: int = 12) -> None:
    """``n`` calls of task ``extract`` (every third escalates) and ``n`` of ``summarise``."""
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    common = {"models": ["gpt-4o-mini", "gpt-4o"], "sample_passes": 1.0}
    (policies / "extract.yaml").write_text(yaml.safe_dump(
        {**common, "validators": [{"type": "json_schema", "schema": SCHEMA}]}))  # fmt: skip
    (policies / "summarise.yaml").write_text(yaml.safe_dump(
        {**common, "validators": [{"type": "structure", "max_chars": 40}]}))  # fmt: skip
    with ScriptedServer() as server:
        server.script("gpt-4o-mini", '{"total": "ten"}', match="BAD")
        server.script("gpt-4o-mini", "y " * 30, match="LONG")
        server.script("gpt-4o-mini", '{"total": 10}')
        server.script("gpt-4o", '{"total": 10}')
        c = cascade.Cascade(policies, client=server.client(), store=store)
        for i in range(n):
            bad = "BAD" if i % 3 == 0 else ""
            c.run("extract", [{"role": "user", "content": f"invoice {i} {bad} {EVIL}"}])
            c.run("summarise", [{"role": "user", "content": f"ticket {i} {'LONG' * (i % 4 == 0)}"}])
        store.flush()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MemoryStore:
    s = MemoryStore()
    fill(s, tmp_path_factory.mktemp("dash"))
    return s


@pytest.fixture(scope="module")
def served(store: MemoryStore) -> Iterator[ProxyServer]:
    with ProxyServer(create_app(store, keys=(KEY,), cache_s=0, background=False)) as server:
        yield server


def get(
    server: ProxyServer, path: str, headers: dict[str, str] | None = None,
    method: str = "GET", body: str | None = None,
) -> tuple[int, dict[str, str], str]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        conn.close()


def bearer(key: str = KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def fields(page: str) -> dict[str, str]:
    return {
        k: unescape(v) for k, v in re.findall(r'data-field="([^"]+)" data-value="([^"]*)"', page)
    }


def test_overview_figures_are_the_reports(served: ProxyServer, store: MemoryStore) -> None:
    status, _, page = get(served, "/", bearer())
    assert status == 200
    overall = report_to_dict(build_report(store, sample=0))["overall"]
    shown = fields(page)
    for name in ("calls", "cost_usd", "baseline_cost_usd", "savings_usd", "escalation_rate"):
        assert float(shown[name]) == pytest.approx(overall[name], rel=1e-12), name
    assert int(shown["calls"]) == 24


def test_task_page_figures_failures_and_patterns(served: ProxyServer, store: MemoryStore) -> None:
    status, _, page = get(served, "/task?task=extract", bearer())
    assert status == 200
    t = report_to_dict(build_report(store, task="extract"))["tasks"][0]
    shown = fields(page)
    assert int(shown["calls"]) == t["calls"] == 12
    assert float(shown["escalation_rate"]) == t["escalation_rate"] == 4 / 12
    assert "json_schema" in page and "4 of 12 calls" in page
    assert "Escalation rate by input size" in page


def test_a_task_with_no_calls_is_a_404_page(served: ProxyServer) -> None:
    status, _, page = get(served, "/task?task=nope", bearer())
    assert status == 404 and "nope" in page


def test_stored_inputs_are_escaped_and_no_script_may_run(served: ProxyServer) -> None:
    status, headers, page = get(served, "/calls?task=extract", bearer())
    assert status == 200
    assert EVIL not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script" not in csp.replace("default-src", "")
    assert headers["x-frame-options"] == "DENY"
    assert "<script" not in page


def test_filters_change_the_calls_listed(served: ProxyServer) -> None:
    def shown(query: str) -> int:
        _, _, page = get(served, "/calls?task=extract" + query, bearer())
        return page.count('<details class="call"')

    assert shown("") == 12
    assert shown("&escalated=yes") == 4
    assert shown("&escalated=no") == 8
    assert shown("&validator=json_schema") == 4
    assert shown("&model=gpt-4o") == 4  # escalated calls are the only ones the strong model saw
    assert shown("&ok=no") == 0
    assert shown("&since=2000-01-01&until=2000-01-02") == 0


def test_a_bad_time_is_a_400_naming_it(served: ProxyServer) -> None:
    status, _, page = get(served, "/?since=yesterday-ish", bearer())
    assert status == 400 and "yesterday-ish" in page


# --- the key ---------------------------------------------------------------------------------


def test_without_a_key_a_page_sends_the_browser_to_the_login_form(served: ProxyServer) -> None:
    status, headers, _ = get(served, "/task?task=extract")
    assert status == 303 and headers["location"] == "/login?next=%2Ftask%3Ftask%3Dextract"
    status, _, page = get(served, "/calls?task=extract", bearer("wrong"))
    assert status == 401 and "extract" not in page


def login(server: ProxyServer, key: str, origin: str | None = None, next_: str = "/") -> Any:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    headers["origin"] = origin if origin is not None else server.url
    body = f"key={key}&next={next_}"
    return get(server, "/login", headers, method="POST", body=body)


def test_login_sets_an_httponly_strict_cookie_that_is_not_the_key(served: ProxyServer) -> None:
    status, headers, _ = login(served, KEY, next_="/calls?task=extract")
    assert status == 303 and headers["location"] == "/calls?task=extract"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
    value = cookie.split(";")[0]
    assert KEY not in value
    status, _, page = get(served, "/", {"cookie": value})
    assert status == 200 and "Overview" in page
    assert get(served, "/", {"cookie": value[:-2] + "00"})[0] == 303  # a forged session


def test_login_refuses_a_wrong_key_another_origin_and_foreign_redirects(
    served: ProxyServer,
) -> None:
    assert login(served, "wrong")[0] == 401
    assert login(served, KEY, origin="https://evil.example")[0] == 403
    status, headers, _ = login(served, KEY, next_="//evil.example/")
    assert status == 303 and headers["location"] == "/"


def test_logout_forgets_the_cookie(served: ProxyServer) -> None:
    status, headers, _ = get(served, "/logout", method="POST")
    assert status == 303 and 'cascade_dashboard=""' in headers["set-cookie"]


# --- the calls filter, page by page ---------------------------------------------------------


def test_find_calls_pages_through_matches_newest_first(
    make_record: Callable[..., CallRecord],
) -> None:
    store = MemoryStore()
    for i in range(30):
        store.add(make_record(escalated=i % 2 == 0))
    where = CallFilter(task="extract", escalated=True)
    first = find_calls(store, where, page=10)
    assert len(first.records) == 10 and all(r.escalated for r in first.records)
    assert first.scanned == 20  # read in chunks: no more than the page needed
    times = [r.time for r in first.records]
    assert times == sorted(times, reverse=True)
    second = find_calls(store, where, page=10, before=first.next_before)
    assert len(second.records) == 5 and second.next_before is None
    assert not {r.id for r in first.records} & {r.id for r in second.records}


def test_find_calls_reads_at_most_scan_records_and_says_where_to_go_on(
    make_record: Callable[..., CallRecord],
) -> None:
    store = MemoryStore()
    for _ in range(20):
        store.add(make_record(escalated=False))
    found = find_calls(store, CallFilter(task="extract", escalated=True), scan=8)
    assert found.records == () and found.scanned == 8 and found.next_before is not None
    rest = find_calls(store, CallFilter(task="extract"), before=found.next_before, scan=100)
    assert len(rest.records) == 12 and rest.next_before is None


# --- the proxy, the CLI and the static report ---------------------------------------------


def test_the_proxy_serves_the_dashboard_behind_its_keys(tmp_path: Path) -> None:
    store = MemoryStore()
    fill(store, tmp_path, n=3)
    config = ProxyConfig(proxy_keys=("proxy-key",), dashboard_keys=("board-key",))
    with ScriptedServer() as upstream:
        c = cascade.Cascade(tmp_path / "policies", client=upstream.client(), store=store)
        with ProxyServer(create_proxy(c, config, upstream.async_client())) as proxy:
            assert get(proxy, "/dashboard")[1]["location"].endswith("/dashboard/")
            status, headers, _ = get(proxy, "/dashboard/")
            assert status == 303 and headers["location"].startswith("/dashboard/login")
            assert get(proxy, "/dashboard/", bearer("proxy-key"))[0] == 401
            status, _, page = get(proxy, "/dashboard/", bearer("board-key"))
            assert status == 200 and 'href="/dashboard/task?task=extract"' in page
    config = ProxyConfig(proxy_keys=("proxy-key",))  # no dashboard keys: the proxy keys
    with ScriptedServer() as upstream:
        c = cascade.Cascade(tmp_path / "policies", client=upstream.client(), store=store)
        with ProxyServer(create_proxy(c, config, upstream.async_client())) as proxy:
            assert get(proxy, "/dashboard/", bearer("proxy-key"))[0] == 200


def test_cascade_dashboard_refuses_a_public_interface_without_a_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CASCADE_DASHBOARD_KEYS", raising=False)
    assert main(["dashboard", "--host", "0.0.0.0", "--store", "memory://"]) == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err


def test_the_html_report_is_the_dashboards_pages(store: MemoryStore) -> None:
    report = build_report(store)
    page = render(report, "html")
    assert page == snapshot_html(json.loads(render(report, "json")))
    assert 'id="overview"' in page and page.count("<section") == 3


def test_a_task_page_never_waits_for_its_patterns(store: MemoryStore) -> None:
    app = create_app(store, keys=(KEY,), patterns_s=3600)
    figures = app.state.dashboard.figures
    with ProxyServer(app) as server:
        status, _, page = get(server, "/task?task=extract", bearer())
        assert status == 200 and 'data-field="pending"' in page
        assert int(fields(page)["calls"]) == 12  # the counters are there at once
        deadline = time.monotonic() + 60
        while figures._building and time.monotonic() < deadline:
            time.sleep(0.05)
        status, _, page = get(server, "/task?task=extract", bearer())
        assert 'data-field="pending"' not in page and "Escalation rate by input size" in page
