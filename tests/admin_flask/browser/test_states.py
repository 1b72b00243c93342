"""The designed states: an empty store, a store that cannot be read (503), and recovery."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from exporter.fixtures import load_fixture
from tests.admin_flask.browser.conftest import Site, Watch, copy_store, running_site
from tests.admin_flask.browser.text import english_left
from tests.admin_flask.conftest import Store
from tests.admin_flask.seed import Manifest


@pytest.fixture
def empty_site(tmp_path: Path) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    load_fixture("empty", url)
    with running_site(Store("sqlite", url, Manifest())) as site:
        yield site


def test_an_empty_store_says_how_to_record_calls(empty_site: Site, page: Page) -> None:
    empty_site.open(page, "tab=llm")
    state = page.locator("#call-list .state-empty")
    expect(state).to_contain_text("No LLM calls recorded yet")
    expect(state.locator("pre.code")).to_contain_text('llm_otel.setup(db="sqlite:///llm_calls.db")')
    expect(state).to_contain_text("llm-otel demo")
    expect(page.locator("#status-card")).to_contain_text("No process has reported a scheduler yet.")
    expect(page.locator("#status-card .chart")).to_contain_text("No calls in this window")
    expect(page.locator("#pager")).to_be_empty()
    page.get_by_role("tab", name="Tasks").click()
    expect(page.locator("#view-tasks .state-empty")).to_contain_text("No tasks recorded yet")
    page.locator("#lang").select_option("zh-CN")
    expect(page.locator("#view-tasks .state-empty")).to_contain_text("还没有记录任何任务")
    assert english_left(page) == []
    page.get_by_role("tab", name="LLM 调度").click()
    expect(state).to_contain_text("还没有记录任何 LLM 调用")
    assert english_left(page) == []


def test_an_unreadable_store_shows_a_clear_message_and_the_page_recovers(
    seeded: Store, tmp_path: Path, page: Page, watch: Watch
) -> None:
    # the browser's lines for a 503: a fetch, and a websocket (re)opened while the feed cannot read the store
    watch.allow(r"status of 503|Unexpected response code: 503")
    store = copy_store(seeded, tmp_path)
    path = store.url.removeprefix("sqlite:///")
    with running_site(store) as site:
        site.open(page, "tab=llm")
        expect(page.locator("#call-list tr.call-row").first).to_be_visible()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path + suffix, path + ".away" + suffix)
        Path(path).write_bytes(b"this is not an SQLite database" * 100)
        page.locator("#filter-bar .status-chip.st-failed").click()
        error = page.locator("#call-list .state-error")
        expect(error).to_contain_text("The store file is damaged")  # a file that is not a database
        expect(error.locator(".mono")).to_contain_text("cannot be read")
        expect(error.locator(".mono")).to_contain_text("move the file aside")
        expect(page.locator("#status-card")).to_contain_text("The store file is damaged")
        page.locator("#lang").select_option("zh-CN")
        expect(error).to_contain_text("存储文件已损坏")
        assert english_left(page) == []
        page.locator("#lang").select_option("en")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path + ".away" + suffix, path + suffix)
        # no click needed: the page tries again by itself
        expect(page.locator("#call-list tr.call-row").first).to_be_visible(timeout=15_000)
        expect(page.locator("#banner")).to_be_hidden()
        expected = store.count("status = 'failed'")
        expect(page.locator("#call-list tr.call-row")).to_have_count(expected)
