"""The dashboard in a real browser: headless Chromium through Playwright.

One browser for the module; the store is filled by real ``Cascade.run`` calls against
``ScriptedServer`` (see ``test_dashboard.fill``). Skipped when Playwright or Chromium is
missing, unless ``CASCADE_REQUIRE_BROWSER=1`` (CI sets it), which makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

import pytest
from test_dashboard import KEY, fill, spread

from cascade.dashboard import create_app
from cascade.proxy import ProxyServer
from cascade.report import build_report, report_to_dict
from cascade.stores import MemoryStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CHROMIUM = os.environ.get("CASCADE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _missing(reason: str) -> None:
    if os.environ.get("CASCADE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CASCADE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MemoryStore:
    s = MemoryStore()
    fill(s, tmp_path_factory.mktemp("browser"))
    return s


@pytest.fixture(scope="module")
def served(store: MemoryStore) -> Iterator[ProxyServer]:
    with ProxyServer(create_app(store, keys=(KEY,), cache_s=0, background=False)) as server:
        yield server


@pytest.fixture
def errors() -> list[str]:
    """The console errors and uncaught exceptions of the test's page."""
    return []


@pytest.fixture
def page(browser: Any, served: ProxyServer, errors: list[str]) -> Iterator[Any]:
    """A fresh browser context (no cookie) whose console errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert errors == []


def log_in(page: Any, served: ProxyServer, path: str = "/") -> None:
    page.goto(served.url + path)
    page.fill("#key", KEY)
    with page.expect_navigation():
        page.click("button[type=submit]")


def test_without_the_key_there_is_only_the_login_form(
    page: Any, served: ProxyServer, errors: list[str]
) -> None:
    page.goto(served.url + "/task?task=extract")
    assert page.locator("#key").count() == 1
    assert page.locator("[data-field]").count() == 0
    page.fill("#key", "not-the-key")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "not one of the dashboard keys" in page.inner_text("main")
    assert page.context.cookies() == []
    # The one error expected: Chromium logs the refusal's status.
    assert errors == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    errors.clear()


def test_overview_and_task_totals_equal_the_reports_json(
    page: Any, served: ProxyServer, store: MemoryStore
) -> None:
    log_in(page, served)
    overall = report_to_dict(build_report(store, sample=0))["overall"]

    def shown(field: str) -> float:
        return float(page.get_attribute(f'[data-field="{field}"]', "data-value"))

    for name in ("calls", "cost_usd", "baseline_cost_usd", "savings_usd", "savings_pct"):
        assert shown(name) == pytest.approx(overall[name], rel=1e-12), name
    assert page.locator("svg.chart").count() >= 3
    assert page.locator("svg.chart rect.hit title").count() >= 1  # hover values
    page.click("text=extract")
    task = report_to_dict(build_report(store, task="extract"))["tasks"][0]
    assert shown("calls") == task["calls"] and shown("escalation_rate") == task["escalation_rate"]


def test_filters_change_the_calls_and_a_call_opens_to_its_attempts(
    page: Any, served: ProxyServer
) -> None:
    log_in(page, served, "/calls?task=extract")
    calls = page.locator("details.call")
    assert calls.count() == 12
    page.select_option("select[name=escalated]", "yes")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    assert calls.count() == 4
    first = calls.first
    assert not first.locator(".attempt").first.is_visible()
    first.locator("summary").click()
    attempts = first.locator(".attempt")
    assert attempts.count() == 2 and attempts.first.is_visible()
    text = first.inner_text()
    assert "gpt-4o-mini" in text and "json_schema" in text and "prompt" in text
    assert "<script>alert('x')</script>" in text  # shown as text, not run: no page error


def test_the_static_html_report_renders_without_errors(
    page: Any, store: MemoryStore, tmp_path: Path
) -> None:
    from cascade.report import render

    out = tmp_path / "report.html"
    out.write_text(render(build_report(store), "html"), encoding="utf-8")
    page.goto(out.as_uri())
    assert page.locator("section").count() == 3
    assert float(page.get_attribute('[data-field="calls"]', "data-value")) == 24


def test_a_one_day_store_shows_hourly_charts_whose_hours_add_up_to_the_day(
    browser: Any, store: MemoryStore, errors: list[str]
) -> None:
    hourly = spread(store)
    app = create_app(hourly, keys=(KEY,), cache_s=0, background=False)
    with ProxyServer(app) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        log_in(page, server)
        report = report_to_dict(build_report(hourly, sample=0))["overall"]
        assert page.get_attribute(".grid2[data-granularity]", "data-granularity") == "hour"
        chart = page.locator("figure.chart", has_text="Calls per hour")
        titles = chart.locator("rect.hit title").all_text_contents()
        per_hour = [int(t.rsplit(": ", 1)[1].split()[0]) for t in titles]
        assert len(per_hour) == 24 and len([n for n in per_hour if n]) == 6
        shown = int(page.get_attribute('[data-field="calls"]', "data-value"))
        assert sum(per_hour) == shown == report["calls"] == report["daily"][0]["calls"]
        assert [n for n in per_hour if n] == [h["calls"] for h in report["hourly"]]
        page.select_option("select[name=by]", "day")
        with page.expect_navigation():
            page.click("form.filters button[type=submit]")
        assert page.get_attribute(".grid2[data-granularity]", "data-granularity") == "day"
        assert page.locator("figure.chart", has_text="Calls per day").count() == 1
        assert "by=day" in page.url
        context.close()
    assert errors == []
