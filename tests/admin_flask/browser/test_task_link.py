"""A host app's own task page: "View parent task" follows the configured ``task_url`` there."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.admin_flask.browser.conftest import copy_store, running_site
from tests.admin_flask.conftest import Store


def test_a_task_link_that_points_elsewhere_is_followed(seeded: Store, page: Page, tmp_path: Path) -> None:
    store = copy_store(seeded, tmp_path)
    with running_site(store, LLM_OTEL_ADMIN_TASK_URL="https://jobs.example.com/task/{task_id}") as site:
        call_id = store.manifest.calls["retried"]
        page.route(
            "https://jobs.example.com/**", lambda route: route.fulfill(body="the host app's task page")
        )
        site.open(page, f"tab=llm&call={call_id}")
        link = page.get_by_role("link", name="View parent task")
        expect(link).to_have_attribute("href", "https://jobs.example.com/task/job-42")
        link.click()
        expect(page).to_have_url("https://jobs.example.com/task/job-42")
        expect(page.locator("body")).to_have_text("the host app's task page")
