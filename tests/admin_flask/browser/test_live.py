"""Live: calls made by another process appear on the open page without a reload.

The other process is a real child interpreter making real openai calls into the store (the admin
tests' ``child``). Timeouts are functional and generous; the latency itself is measured in bench/.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from llm_otel.testing import Behavior, FakeOpenAI
from tests.admin_flask.browser.conftest import Site, Watch, running_site
from tests.admin_flask.conftest import ChildWriter, Store

ROWS = "#call-list tr.call-row"
ARRIVES_WITHIN_MS = 5000  # functional: the page updates within 250 ms; a loaded CI machine gets slack


@pytest.fixture
def site(store: Store) -> Iterator[Site]:
    with running_site(store) as running:
        yield running


def mark_page(page: Page) -> None:
    """A flag that a reload would lose."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__notReloaded === true")


def test_a_call_from_another_process_appears_at_the_top(site: Site, child: ChildWriter, page: Page) -> None:
    site.open(page, "tab=llm")
    expect(page.locator(ROWS).first).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    total_before = site.store.count()
    mark_page(page)
    child.call("live-process", "a call from the other process")
    written = time.perf_counter()  # the child returns once its store wrote the call
    top = page.locator(f"{ROWS}[data-index='0']")
    expect(top).to_contain_text("live-process", timeout=ARRIVES_WITHIN_MS)
    shown_ms = (time.perf_counter() - written) * 1000
    print(f"\na call written by another process was on the page {shown_ms:.0f} ms later")
    expect(top).to_contain_text("a call from the other process")
    expect(top.locator(".pill")).to_have_text("Succeeded", timeout=ARRIVES_WITHIN_MS)
    [(call_id,)] = site.store.rows("SELECT call_id FROM llm_calls WHERE source = 'live-process'")
    expect(top).to_have_attribute("data-call-id", call_id)
    expect(page.locator("#pager")).to_contain_text(f"of {total_before + 1}", timeout=ARRIVES_WITHIN_MS)
    expect(page.locator(ROWS)).to_have_count(50)
    assert_not_reloaded(page)


def test_on_another_page_or_while_reading_a_notice_counts_new_calls(
    site: Site, child: ChildWriter, page: Page
) -> None:
    site.open(page, "tab=llm&page=2")
    expect(page.locator(ROWS).first).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    before = page.locator(ROWS).evaluate_all("rows => rows.map(r => r.dataset.callId)")
    mark_page(page)
    child.call("notice-1")
    child.call("notice-2")
    notice = page.locator("#new-calls")
    expect(notice).to_have_text("2 new calls: show", timeout=ARRIVES_WITHIN_MS)
    assert page.locator(ROWS).evaluate_all("rows => rows.map(r => r.dataset.callId)") == before
    notice.get_by_role("button").click()
    expect(page).not_to_have_url(re.compile(r"page=2"))
    expect(page.locator(f"{ROWS}[data-index='0']")).to_contain_text("notice-2")
    expect(notice).to_be_hidden()
    # reading a call: the list stays put, the notice counts
    page.locator(f"{ROWS}[data-index='3']").click()
    expect(page.locator("#drawer")).to_be_visible()
    child.call("notice-3")
    expect(notice).to_have_text("1 new call: show", timeout=ARRIVES_WITHIN_MS)
    expect(page.locator(f"{ROWS}[data-index='0']")).to_contain_text("notice-2")
    assert_not_reloaded(page)


def test_a_call_in_flight_updates_its_row_and_open_drawer(
    site: Site, child: ChildWriter, fake_openai: FakeOpenAI, page: Page
) -> None:
    site.open(page, "tab=llm")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    mark_page(page)
    fake_openai.script(Behavior(first_chunk_delay=2.5, content="worth the wait"))
    caller = threading.Thread(target=child.call, args=("in-flight", "a slow one"))
    caller.start()
    try:
        row = page.locator(ROWS, has_text="in-flight")
        expect(row.locator(".pill")).to_have_text("Running", timeout=ARRIVES_WITHIN_MS)
        row.click()
        drawer = page.locator("#drawer")
        expect(drawer.locator(".drawer-title .pill")).to_have_text("Running")
        expect(drawer.locator(".drawer-title .pill")).to_have_text(
            "Succeeded", timeout=ARRIVES_WITHIN_MS + 2500
        )
        expect(drawer.locator(".conversation .turn.is-output")).to_contain_text("worth the wait")
        expect(row.locator(".pill")).to_have_text("Succeeded")
    finally:
        caller.join(30)
    assert_not_reloaded(page)


def test_the_feed_reconnects_and_resumes_after_the_last_event(
    site: Site, child: ChildWriter, page: Page, watch: Watch
) -> None:
    watch.allow(r"WebSocket connection to .* failed")  # the drop this test makes happen
    sockets: list[Any] = []
    urls: list[str] = []
    down = threading.Event()

    def route(ws: Any) -> None:
        urls.append(ws.url)
        if down.is_set():
            ws.close()
        else:
            ws.connect_to_server()
            sockets.append(ws)

    page.route_web_socket(re.compile(r"/llm/ws"), route)
    site.open(page, "tab=llm")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    child.call("before-drop")
    expect(page.locator(f"{ROWS}[data-index='0']")).to_contain_text("before-drop", timeout=ARRIVES_WITHIN_MS)
    mark_page(page)
    down.set()
    sockets[-1].close()
    expect(page.locator("#conn")).not_to_have_attribute("data-state", "live")
    child.call("while-away")  # written while the page has no feed
    down.clear()
    expect(page.locator(f"{ROWS}[data-index='0']")).to_contain_text(
        "while-away", timeout=ARRIVES_WITHIN_MS * 3
    )
    assert any("after=" in url for url in urls[1:]), urls  # it resumed from the last event it saw
    assert_not_reloaded(page)


def test_without_websockets_the_long_poll_keeps_the_page_live(
    site: Site, child: ChildWriter, page: Page
) -> None:
    page.route_web_socket(re.compile(r"/llm/ws"), lambda ws: ws.close())  # a proxy that drops websockets
    site.open(page, "tab=llm")
    expect(page.locator("#conn")).to_have_attribute("data-state", "polling", timeout=ARRIVES_WITHIN_MS)
    expect(page.locator("#conn")).to_have_text("Live (polling)")
    mark_page(page)
    child.call("polled")
    expect(page.locator(f"{ROWS}[data-index='0']")).to_contain_text("polled", timeout=ARRIVES_WITHIN_MS)
    assert_not_reloaded(page)
