"""简体中文: the switch translates every string of the page (data stays as it is), and is remembered."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from tests.admin_flask.browser.conftest import Site
from tests.admin_flask.browser.text import english_left, ui_texts


def switch_to_chinese(page: Page) -> None:
    page.locator("#lang").select_option("zh-CN")
    expect(page.get_by_role("tab", name="LLM 调度")).to_be_visible()


def test_the_chinese_switch_leaves_no_english_string_in_any_view(seeded_site: Site, page: Page) -> None:
    site, manifest = seeded_site, seeded_site.store.manifest
    site.open(page, "tab=llm")
    expect(page.locator("#call-list tr.call-row").first).to_be_visible()
    assert english_left(page), "the English page should have English strings: the check would prove nothing"
    switch_to_chinese(page)
    expect(page.locator("#filter-summary .total")).to_contain_text("次调用")
    expect(page.locator("#status-card h2")).to_have_text("调度器")
    assert english_left(page) == []
    # a call with retries, an error and a timeline; then one with a tool call
    page.goto(f"{page.url}&call={manifest.calls['failed']}")
    expect(page.locator("#drawer .drawer-error")).to_be_visible()
    expect(page.locator("#drawer li.ev-retry").first).to_contain_text("重试")
    page.locator("#drawer details.raw > summary").click()
    assert english_left(page) == []
    page.goto(page.url.replace(manifest.calls["failed"], manifest.calls["tool_call"]))
    expect(page.locator("#drawer .tool-card")).to_contain_text("工具调用")
    assert english_left(page) == []
    # the tasks tab with a task open
    page.get_by_role("link", name="查看所属任务").click()
    expect(page.locator(".task-card .tl-lane").first).to_be_visible()
    assert english_left(page) == []
    # the filters' own states: no match
    page.goto(re.sub(r"tab=tasks.*", "tab=llm&q=zqxjkv-nothing", page.url))
    expect(page.locator("#call-list .state-empty")).to_contain_text("没有符合这些筛选条件的调用")
    assert english_left(page) == []


def test_the_choice_is_remembered_and_the_default_follows_the_browser(
    seeded_site: Site, page: Page, browser: Browser
) -> None:
    seeded_site.open(page, "tab=llm")
    switch_to_chinese(page)
    page.reload()
    expect(page.get_by_role("tab", name="LLM 调度")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.locator("#lang").select_option("en")
    expect(page.get_by_role("tab", name="LLM scheduler")).to_be_visible()
    page.reload()
    expect(page.get_by_role("tab", name="LLM scheduler")).to_be_visible()
    chinese_browser = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    try:
        other = seeded_site.open(chinese_browser.new_page(), "tab=llm")
        expect(other.get_by_role("tab", name="LLM 调度")).to_be_visible()
        expect(other.locator("#lang")).to_have_value("zh-CN")
        assert "任务" in ui_texts(other)
    finally:
        chinese_browser.close()
