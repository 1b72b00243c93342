"""Screenshots of each main state of the page, in English and 简体中文.

They are the README's pictures and a reviewer's quick look: the list, a call's drawer, the tasks tab
with a task's timeline, the status card, the empty store and the store unavailable. Each is also
checked for what it must show, so a broken state fails here rather than producing a broken picture.
A test run writes them to a temporary folder, so it leaves the checkout as it was; ``make
screenshots`` sets ``LLM_OTEL_SCREENSHOTS=docs/screenshots`` to refresh the committed ones.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from exporter.fixtures import load_fixture
from tests.admin_flask.browser.conftest import Site, Watch, running_site
from tests.admin_flask.conftest import Store
from tests.admin_flask.seed import Manifest
from tests.children import REPO

LANGUAGES = {"en": "en", "zh": "zh-CN"}


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the pictures go: ``$LLM_OTEL_SCREENSHOTS`` (relative to the checkout), else a temp folder."""
    chosen = os.environ.get("LLM_OTEL_SCREENSHOTS")
    folder = REPO / chosen if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(folder: Path, page: Page, name: str, lang: str, element: str | None = None) -> Path:
    path = folder / f"{name}-{lang}.png"
    target = page.locator(element) if element else page
    target.screenshot(path=str(path), animations="disabled", caret="hide")
    assert path.stat().st_size > 10_000
    return path


def set_language(page: Page, lang: str) -> None:
    page.locator("#lang").select_option(LANGUAGES[lang])
    expect(page.get_by_role("tab", name="LLM 调度" if lang == "zh" else "LLM scheduler")).to_be_visible()


@contextlib.contextmanager
def fixture_site(tmp_path: Path, *names: str) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    for name in names:
        load_fixture(name, url)
    with running_site(Store("sqlite", url, Manifest())) as site:
        yield site


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_list_drawer_tasks_and_status_card(tmp_path: Path, shots: Path, page: Page, lang: str) -> None:
    with fixture_site(tmp_path, "normal-day", "agent-tools") as site:
        site.open(page, "tab=llm")
        set_language(page, lang)
        expect(page.locator("#call-list tr.call-row")).to_have_count(50)
        expect(page.locator("#status-card .chart .bucket").first).to_be_attached()
        expect(page.locator("#call-list")).not_to_have_attribute("aria-busy", "true")
        shoot(shots, page, "llm-list", lang)
        shoot(shots, page, "llm-status", lang, "#status-card")
        [(call_id,)] = site.store.rows(
            "SELECT c.call_id FROM llm_calls c JOIN llm_call_bodies b USING (call_id) "
            "WHERE c.source = 'support-bot' AND c.requested_by = 'agent' "
            "AND b.input_messages LIKE '%tool_call_response%' "
            "ORDER BY c.retry_count DESC, c.enqueued_at DESC LIMIT 1"
        )
        page.goto(f"{site.url}/admin/jobs/?tab=llm&call={call_id}")
        expect(page.locator("#drawer .tool-card").first).to_be_visible()
        shoot(shots, page, "llm-drawer", lang)
        page.locator("#drawer .btn-task").click()
        expect(page.locator(".task-card .tl-lane").first).to_be_visible()
        shoot(shots, page, "tasks", lang)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_empty_store(tmp_path: Path, shots: Path, page: Page, lang: str) -> None:
    with fixture_site(tmp_path, "empty") as site:
        site.open(page, "tab=llm")
        set_language(page, lang)
        expect(page.locator("#call-list .state-empty pre.code")).to_be_visible()
        shoot(shots, page, "empty", lang)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_store_unavailable(tmp_path: Path, shots: Path, page: Page, watch: Watch, lang: str) -> None:
    watch.allow(r"status of 503")
    with fixture_site(tmp_path, "errors") as site:
        site.open(page, "tab=llm")
        set_language(page, lang)
        expect(page.locator("#call-list tr.call-row").first).to_be_visible()
        path = site.store.url.removeprefix("sqlite:///")
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)
        Path(path).write_bytes(b"this is not an SQLite database" * 100)
        page.reload()
        expect(page.locator("#call-list .state-error")).to_be_visible()
        expect(page.locator("#status-card .status-error")).to_be_visible()
        shoot(shots, page, "error", lang)
