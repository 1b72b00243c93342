"""A 1 MB prompt opens in the drawer at once, folded, and renders on demand without freezing the page."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from exporter.fixtures import load_fixture
from tests.admin_flask.browser.conftest import Site, running_site
from tests.admin_flask.conftest import Store
from tests.admin_flask.seed import Manifest


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path_factory.mktemp('huge') / 'store.db'}"
    load_fixture("huge-prompts", url)
    with running_site(Store("sqlite", url, Manifest())) as running:
        yield running


def biggest_call(site: Site) -> tuple[str, str]:
    [(call_id, messages)] = site.store.rows(
        "SELECT call_id, input_messages FROM llm_call_bodies ORDER BY length(input_messages) DESC LIMIT 1"
    )
    prompt = json.loads(messages)[-1]["parts"][0]["content"]
    assert len(prompt) > 1_000_000
    return call_id, prompt


def test_a_one_megabyte_prompt_opens_folded_and_expands_while_the_page_answers(
    site: Site, page: Page
) -> None:
    call_id, prompt = biggest_call(site)
    site.open(page, "tab=llm")
    expect(page.locator("#call-list tr.call-row").first).to_be_visible()
    started = time.perf_counter()
    page.locator(f'tr[data-call-id="{call_id}"]').click()
    user = page.locator("#drawer .turn.role-user")
    expect(user.locator(".expand")).to_be_visible(timeout=5000)  # functional; the figure is printed below
    opened_s = time.perf_counter() - started
    shown = user.locator("pre.text").evaluate("pre => pre.textContent")
    assert prompt.startswith(shown) and len(shown) < 5000
    expect(user.locator(".expand")).to_have_text(f"Show all {len(prompt):,} characters")
    assert page.evaluate("1 + 1") == 2
    # render the whole text: the page keeps answering while the slices go in
    user.locator(".expand").click()
    answered = [page.evaluate("Date.now()") for _ in range(5)]
    assert answered == sorted(answered)
    expect(user.locator(".long-text")).to_have_class("long-text is-expanded", timeout=20_000)
    assert user.locator("pre.text").evaluate("pre => pre.textContent") == prompt
    page.locator("#drawer .drawer-body").evaluate("body => body.scrollTop = body.scrollHeight")
    page.keyboard.press("Escape")
    expect(page.locator("#drawer")).to_be_hidden()
    print(f"\n1 MB prompt: drawer shown {opened_s * 1000:.0f} ms after the click (incl. the request)")


def test_the_raw_json_of_a_huge_call_is_folded_too_and_copies_whole(site: Site, page: Page) -> None:
    call_id, prompt = biggest_call(site)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    site.open(page, f"tab=llm&call={call_id}")
    raw = page.locator("#drawer details.raw")
    raw.locator("summary").click()
    expect(raw.locator(".expand")).to_be_visible()
    raw.get_by_role("button", name="Copy JSON").click()
    expect(raw.get_by_role("button", name="Copied")).to_be_visible()
    copied = json.loads(page.evaluate("navigator.clipboard.readText()"))
    assert copied["call_id"] == call_id
    assert copied["input_messages"][-1]["parts"][0]["content"] == prompt
