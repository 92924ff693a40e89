"""The dashboard over HTTP: figures equal to the report's JSON, the key, escaping, filters.

The store is filled by real ``Cascade.run`` calls against ``cascade.testing.ScriptedServer``;
the dashboard is served by uvicorn (``ProxyServer``) and read with ``http.client``.
"""

from __future__ import annotations

import dataclasses
import hmac
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
from cascade.dashboard import Throttle, create_app, overview_html, snapshot_html
from cascade.dashboard.app import client_address
from cascade.dashboard.auth import COOKIE, Keys
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


def spread(store: MemoryStore, hours: int = 6) -> MemoryStore:
    """The calls of ``store`` moved into the first ``hours`` hours of yesterday (UTC), one
    hour after another: a one-day store whose calls fall in several hours."""
    start = time.time() // 86_400 * 86_400 - 86_400
    out = MemoryStore()
    ordered = sorted(store.records(), key=lambda r: r.time)
    for i, r in enumerate(ordered):
        out.add(dataclasses.replace(r, time=start + 3600 * (i % hours) + 60 + i))
    return out


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


def test_a_one_day_store_is_drawn_per_hour_and_the_hours_add_up_to_the_day(
    store: MemoryStore,
) -> None:
    hourly = spread(store)
    assert len(list(hourly.records())) == 24  # fill stores every call (sample_passes 1.0)
    with ProxyServer(create_app(hourly, keys=(KEY,), cache_s=0, background=False)) as server:
        report = report_to_dict(build_report(hourly, sample=0))
        for path, t in (("/", report["overall"]), ("/task?task=extract", report["tasks"][0])):
            status, _, page = get(server, path, bearer())
            assert status == 200
            assert 'data-granularity="hour"' in page  # auto: the period is under 3 days
            assert "Calls per hour" in page and "Spend per hour (USD)" in page
            per_hour = [int(n) for n in re.findall(r":00: (\d+) calls</title>", page)]
            assert len(per_hour) == 24  # every hour of the day, zero where no call was
            assert len([n for n in per_hour if n]) == len(t["hourly"]) > 1
            assert sum(per_hour) == t["calls"] == sum(d["calls"] for d in t["daily"])
            assert [h["calls"] for h in t["hourly"]] == [n for n in per_hour if n]
        status, _, page = get(server, "/?by=day", bearer())
        assert 'data-granularity="day"' in page and "Calls per day" in page
        assert re.findall(r"(\d+) calls</title>", page) == [str(report["overall"]["calls"])]
        status, _, page = get(server, "/?by=week", bearer())
        assert status == 400 and "by=&#x27;week&#x27;" in page
        status, _, page = get(server, "/?since=30d", bearer())
        assert 'data-granularity="day"' in page  # auto: 30 days are drawn per day
        status, _, page = get(server, "/?since=30d&by=hour", bearer())
        assert 'data-granularity="hour"' in page
        assert '<option value="hour" selected>' in page


def test_hours_the_store_does_not_have_are_said_to_be_unknown(store: MemoryStore) -> None:
    report = report_to_dict(build_report(store, sample=0))
    report["overall"]["hourly"] = None  # as from a store that keeps no hourly counters
    page = overview_html(report, task_href=str, by="hour")
    assert 'data-field="hourly_unknown"' in page and 'data-granularity="day"' in page
    assert "Calls per day" in page and "Calls per hour" not in page


def test_a_span_that_cuts_into_a_day_says_the_figures_count_whole_days(
    served: ProxyServer,
) -> None:
    _, _, page = get(served, "/?since=2h", bearer())
    assert "these figures count whole days" in page
    _, _, page = get(served, "/", bearer())
    assert "whole days" not in page


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


def test_a_line_chart_leaves_a_gap_at_an_unknown_point() -> None:
    from cascade.dashboard.charts import RED, Series, time_chart

    svg = time_chart(
        ["a", "b", "c", "d"], [Series("rate", RED, [0.1, None, 0.2, 0.3])], fmt=str,
        title="t", kind="line",
    )  # fmt: skip
    assert svg.count("<polyline") == 1  # c-d only: nothing drawn through b
    assert svg.count("<circle") == 3


# --- wrong keys: throttled per client, compared in constant time ------------------------------


def test_the_throttle_refuses_a_client_after_its_failures_until_its_window_ends() -> None:
    now = [1000.0]
    t = Throttle(limit=3, window_s=60, max_clients=100, clock=lambda: now[0])
    for _ in range(3):
        assert t.retry_after("10.0.0.1") is None
        t.failed("10.0.0.1")
    assert t.retry_after("10.0.0.1") == 60
    assert t.retry_after("10.0.0.2") is None  # another client is not slowed
    now[0] += 45.5
    assert t.retry_after("10.0.0.1") == 15
    now[0] += 14.5
    assert t.retry_after("10.0.0.1") is None  # its window is over: a fresh start
    t.failed("10.0.0.1")
    assert t.retry_after("10.0.0.1") is None
    with pytest.raises(ValueError, match="limit=0"):
        Throttle(limit=0)


def test_the_throttle_remembers_at_most_max_clients() -> None:
    t = Throttle(limit=2, max_clients=50)
    for i in range(10_000):  # an attacker with many addresses
        t.failed(f"203.0.113.{i}")
        t.failed(f"203.0.113.{i}")
    assert len(t) == 50
    assert t.retry_after("203.0.113.9999") is not None  # the most recent are kept
    assert t.retry_after("203.0.113.0") is None  # the oldest forgotten


def test_ten_wrong_keys_a_minute_then_429_with_retry_after(store: MemoryStore) -> None:
    with ProxyServer(create_app(store, keys=(KEY,), cache_s=0, background=False)) as server:
        for _ in range(10):
            assert login(server, "wrong")[0] == 401
        status, headers, page = login(server, KEY)  # even the right key: nothing is checked
        assert status == 429 and "Too many wrong keys" in page
        assert 55 <= int(headers["retry-after"]) <= 60
        assert "set-cookie" not in headers
        assert get(server, "/", bearer())[0] == 429  # the key in a header is a try too
        assert get(server, "/login")[0] == 200  # the form is still shown
    with ProxyServer(create_app(store, keys=(KEY,), cache_s=0, background=False)) as server:
        status, headers, _ = login(server, KEY)
        cookie = headers["set-cookie"].split(";")[0]
        for _ in range(10):
            assert get(server, "/", bearer("wrong"))[0] == 401
        assert get(server, "/", bearer("wrong"))[0] == 429
        assert get(server, "/", {"cookie": cookie})[0] == 200  # an open session stays open


def test_the_proxy_throttles_wrong_keys_at_its_dashboard(tmp_path: Path) -> None:
    store = MemoryStore()
    config = ProxyConfig(proxy_keys=("proxy-key",))
    with ScriptedServer() as upstream:
        c = cascade.Cascade(tmp_path, client=upstream.client(), store=store)
        with ProxyServer(create_proxy(c, config, upstream.async_client())) as proxy:
            for _ in range(10):
                assert get(proxy, "/dashboard/", bearer("guess"))[0] == 401
            status, headers, _ = get(proxy, "/dashboard/", bearer("proxy-key"))
            assert status == 429 and int(headers["retry-after"]) > 0


def test_client_addresses_count_ipv6_by_its_64() -> None:
    from starlette.requests import Request

    def address(host: str) -> str:
        return client_address(Request({"type": "http", "client": (host, 1), "headers": []}))

    assert address("192.0.2.7") == "192.0.2.7"
    assert address("::ffff:192.0.2.7") == "192.0.2.7"
    assert address("2001:db8:1:2:aaaa::1") == address("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address("2001:db8:1:3::1") != address("2001:db8:1:2::1")
    assert address("testclient") == "testclient"


def test_keys_and_sessions_are_compared_with_compare_digest_every_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    keys = Keys(["first-key", "second-key", "third-key"])
    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert keys.check("first-key")  # a match does not stop the comparisons
    assert len(compared) == 3 and all(len(a) == len(b) == 32 for a, b in compared)
    compared.clear()
    assert not keys.check("x" * 10_000)  # digests: the same length whatever is sent
    assert len(compared) == 3 and all(len(a) == 32 for a, _ in compared)
    compared.clear()
    session = keys.session_for("second-key")
    assert keys.allows({}, {COOKIE: session})
    assert len(compared) == 3


def test_cascade_dashboard_samples_as_many_records_as_the_app_by_default() -> None:
    import argparse

    from cascade.cli import dashboard as command
    from cascade.dashboard.app import DEFAULT_SAMPLE

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    assert parser.parse_args(["dashboard"]).sample == DEFAULT_SAMPLE == 1000


def test_bars_of_hundreds_of_hours_keep_a_positive_width() -> None:
    from cascade.dashboard.charts import BLUE, GREY, Series, time_chart

    n = 31 * 24
    svg = time_chart(
        [str(i) for i in range(n)],
        [Series("a", BLUE, [1.0] * n), Series("b", GREY, [2.0] * n)], fmt=str, title="t",
    )  # fmt: skip
    widths = [float(w) for w in re.findall(r'<rect x="[^"]+" y="[^"]+" width="([^"]+)"', svg)]
    assert len(widths) == 2 * n and min(widths) > 0
