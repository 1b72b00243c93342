"""The status card shows what the store writers lost in the retention window, after the process that
lost it has exited (``llm_store_losses``), with the reason as text, in both languages."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.admin_flask.browser.conftest import Watch, copy_store, running_site
from tests.admin_flask.conftest import Store

PAYLOAD = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def test_the_status_card_shows_the_losses_of_exited_processes_as_text(
    seeded: Store, tmp_path: Path, page: Page, watch: Watch
) -> None:
    store = copy_store(seeded, tmp_path)
    now = time.time_ns() // 1_000_000
    store.rows(
        "INSERT INTO llm_store_losses (process, kind, started_at, ended_at, records, calls, reason) "
        "VALUES ('gone:41', 'dropped', ?, ?, 274, 92, ?), ('gone:42', 'file_replaced', ?, ?, 30, 10, ?)",
        now - 60_000,
        now - 50_000,
        f"the writer's queue (10000 records) was full {PAYLOAD}",
        now - 5_000,
        now - 5_000,
        f"the store file was deleted or moved away {PAYLOAD}",
    )
    store.rows("DELETE FROM llm_scheduler_snapshots")  # the processes that lost them have exited
    with running_site(store) as site:
        site.open(page, "tab=llm")
        losses = page.locator("#status-card .status-losses")
        expect(losses).to_contain_text("the store writers lost 274 records (92 calls without their details)")
        expect(losses).to_contain_text("The store file was replaced once")
        expect(losses).to_contain_text("Latest: gone:42")
        expect(losses.locator(".mono")).to_have_text(f"the store file was deleted or moved away {PAYLOAD}")
        assert losses.locator("img, script").count() == 0  # shown as text, never as markup
        page.locator("#lang").select_option("zh-CN")
        expect(losses).to_contain_text("保留期内存储写入器丢失了 274 条记录")
        expect(losses).to_contain_text("存储文件被替换了 1 次")
    assert watch.dialogs == []
