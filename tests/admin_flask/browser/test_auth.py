"""Signing in and out of the standalone admin in a real browser."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.admin_flask.browser.conftest import PAGE, Site, Watch
from tests.admin_flask.conftest import TOKEN


def test_anonymous_visitors_get_the_login_page_and_a_wrong_token_is_refused(
    seeded_site: Site, page: Page, watch: Watch
) -> None:
    watch.allow(r"status of 401")  # the login form answers a wrong token with 401
    page.goto(f"{seeded_site.url}{PAGE}?tab=llm&source=billing")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.locator("#token")).to_be_visible()
    expect(page.locator("#call-list")).to_have_count(0)
    page.locator("#token").fill("not-the-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the admin token")
    expect(page.locator("#call-list")).to_have_count(0)
    page.goto(f"{seeded_site.url}{PAGE}?token=wrong-token&tab=llm")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.locator("#call-list")).to_have_count(0)
    # the right token lands on the view that was asked for
    page.goto(f"{seeded_site.url}{PAGE}?tab=llm&source=billing")
    page.locator("#token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/jobs/\?tab=llm&source=billing$"))
    expect(page.locator("#call-list tr.call-row").first).to_be_visible()
    assert set(page.locator("#call-list tr.call-row td:nth-child(4)").all_inner_texts()) == {"billing"}


def test_logout_ends_the_session(seeded_site: Site, page: Page, watch: Watch) -> None:
    watch.allow(r"status of 401")  # the API refusing the logged-out fetch below
    seeded_site.open(page, "tab=llm")
    expect(page.locator("#call-list tr.call-row").first).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto(f"{seeded_site.url}{PAGE}?tab=llm")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    status = page.evaluate("fetch('/api/admin/jobs/llm/calls').then(r => r.status)")
    assert status == 401


def test_a_session_that_ends_while_the_page_is_open_says_so_and_signs_back_in(
    seeded_site: Site, page: Page, watch: Watch
) -> None:
    watch.allow(r"status of 401")
    seeded_site.open(page, "tab=llm")
    expect(page.locator("#call-list tr.call-row").first).to_be_visible()
    page.context.clear_cookies()
    page.locator("#filter-bar .status-chip.st-failed").click()
    expect(page.locator("#call-list .state-error")).to_contain_text("You are signed out")
    expect(page.locator("#banner")).to_contain_text("You are signed out")
    page.locator("#call-list").get_by_role("link", name="Sign in").click()
    expect(page.locator("#token")).to_be_visible()
    page.locator("#token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"tab=llm&status=failed"))
    expect(page.locator("#call-list tr.call-row").first).to_be_visible()
    assert set(page.locator("#call-list tr.call-row .pill").all_inner_texts()) == {"Failed"}
