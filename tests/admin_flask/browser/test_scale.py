"""100,000 calls: exact totals, the last page, and a filter, as the admin pages through them."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from exporter.fixtures import load_fixture
from tests.admin_flask.browser.conftest import Site, running_site
from tests.admin_flask.conftest import Store
from tests.admin_flask.seed import Manifest

# The hang guard (pyproject's timeout, 120 s) covers the module fixture's 100,000-call build too:
# ~20 s of CPU, but past 120 s on a shared 2-core machine at load 20 (one CI run's error).
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path_factory.mktemp('scale') / 'store.db'}"
    assert load_fixture("100k", url) == 100_000
    with running_site(Store("sqlite", url, Manifest())) as running:
        yield running


def test_a_hundred_thousand_calls_page_to_the_end_with_exact_totals(site: Site, page: Page) -> None:
    site.open(page, "tab=llm")
    expect(page.locator("#filter-summary .total")).to_have_text("100,000 calls")
    expect(page.locator("#pager")).to_contain_text("1–50 of 100,000")
    page.get_by_role("button", name="Last page").click()
    expect(page).to_have_url(re.compile(r"page=2000"))
    expect(page.locator("#pager")).to_contain_text("99,951–100,000 of 100,000")
    expect(page.locator("#call-list tr.call-row")).to_have_count(50)
    [(oldest,)] = site.store.rows("SELECT call_id FROM llm_calls ORDER BY enqueued_at, call_id LIMIT 1")
    expect(page.locator("#call-list tr.call-row").last).to_have_attribute("data-call-id", oldest)
    page.locator("#pager input.page-input").fill("1234")
    page.locator("#pager input.page-input").press("Enter")
    expect(page.locator("#pager")).to_contain_text("61,651–61,700 of 100,000")
    page.locator("#filter-bar .status-chip.st-failed").click()
    failed = site.store.count("status = 'failed'")
    assert failed > 1000
    expect(page.locator("#filter-summary .total")).to_have_text(f"{failed:,} calls")
    expect(page.locator("#pager")).to_contain_text(f"1–50 of {failed:,}")
    expect(page.locator("#filter-bar .status-chip.st-failed .count")).to_have_text(f"{failed:,}")
