"""The LLM tab in a real browser: the status card, the filter bar and the call list over real calls.

What the page shows is compared with what the store holds (plain SQL on the file, not the code
under test) and with what the API answers.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.admin_flask.browser.conftest import Site

ROWS = "#call-list tr.call-row"


def row_ids(page: Page) -> list[str]:
    """The call ids of the list, once the page has shown what it loaded."""
    expect(page.locator("#call-list")).not_to_have_attribute("aria-busy", "true")
    return page.locator(ROWS).evaluate_all("rows => rows.map(row => row.dataset.callId)")


def open_llm(site: Site, page: Page, query: str = "") -> Page:
    site.open(page, "tab=llm" + (f"&{query}" if query else ""))
    expect(page.locator(ROWS).first).to_be_visible()
    return page


def test_the_llm_tab_shows_status_card_filter_bar_and_list(seeded_site: Site, page: Page) -> None:
    site = seeded_site
    site.open(page)
    expect(page.locator('[data-tab="tasks"]')).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="LLM scheduler").click()
    expect(page).to_have_url(re.compile(r"tab=llm"))
    total = site.store.count()
    status = site.api("/llm/status", window="1h")["aggregates"]
    card = page.locator("#status-card")
    expect(card.locator(".kpi").first).to_contain_text(f"{status['total']:,}")
    for name in ("succeeded", "failed", "cancelled"):
        count = site.store.count("status = ?", name)
        expect(card.locator(f".count-chip.st-{name}")).to_contain_text(str(count))
    expect(card.locator("svg.chart .bucket").first).to_be_attached()
    expect(page.locator("#filter-bar input.search")).to_be_visible()
    expect(page.locator("#filter-bar .status-chip")).to_have_count(5)
    expect(page.locator("#filter-summary .total")).to_have_text(f"{total} calls")
    expect(page.locator(ROWS)).to_have_count(50)
    expect(page.locator("#pager")).to_contain_text(f"1–50 of {total}")
    newest = [
        call_id
        for (call_id,) in site.store.rows(
            "SELECT call_id FROM llm_calls ORDER BY enqueued_at DESC, call_id DESC LIMIT 50"
        )
    ]
    assert row_ids(page) == newest
    # each row's figures are the stored ones
    call_id = site.store.manifest.calls["retried"]
    [(retries, tokens_in, tokens_out)] = site.store.rows(
        "SELECT retry_count, input_tokens, output_tokens FROM llm_calls WHERE call_id = ?", call_id
    )
    page.locator("#filter-bar input.search").fill("Retry me until it works")
    row = page.locator(f'{ROWS}[data-call-id="{call_id}"]')
    expect(row.locator("td").nth(9)).to_have_text(str(retries))
    expect(row.locator("td").nth(10)).to_have_text(f"{tokens_in} / {tokens_out}")
    expect(row.locator(".latency .seg")).not_to_have_count(0)


def test_status_source_user_and_time_filters_show_exactly_the_matching_calls(
    seeded_site: Site, page: Page
) -> None:
    site, store = seeded_site, seeded_site.store
    matching = "status IN ('succeeded', 'failed') AND source = 'billing' AND requested_by = 'alice'"
    # A start time inside the matching calls (not inside all billing calls: under load the seed's
    # calls may bunch so that every one of alice's falls on one side of that middle).
    times = [
        row[0]
        for row in store.rows(f"SELECT DISTINCT enqueued_at FROM llm_calls WHERE {matching} ORDER BY 1")
    ]
    assert len(times) >= 2
    middle = times[len(times) // 2]
    open_llm(site, page)
    page.locator("#filter-bar .status-chip.st-succeeded").click()
    page.locator("#filter-bar .status-chip.st-failed").click()
    page.locator('select[data-filter="source"]').select_option("billing")
    page.locator('select[data-filter="requested_by"]').select_option("alice")
    expected = store.ids(
        "status IN ('succeeded', 'failed') AND source = 'billing' AND requested_by = 'alice'"
    )
    assert 1 < len(expected) < 50
    expect(page.locator("#filter-summary .total")).to_have_text(f"{len(expected)} calls")
    expect(page.locator(ROWS)).to_have_count(len(expected))
    assert set(row_ids(page)) == expected
    assert all(
        status in ("Succeeded", "Failed") for status in page.locator(f"{ROWS} .pill").all_inner_texts()
    )
    # the time range: the preset goes into the API query, a custom start in the URL
    page.locator("#filter-bar select.range").select_option("1h")
    expect(page).to_have_url(re.compile(r"range=1h"))
    expect(page.locator(ROWS)).to_have_count(len(expected))  # the seed is younger than an hour
    url = page.url.replace("range=1h", f"from={iso(middle)}")
    page.goto(url)
    in_range = store.ids(
        "status IN ('succeeded', 'failed') AND source = 'billing' AND requested_by = 'alice' "
        "AND enqueued_at >= ?",
        middle,
    )
    assert 0 < len(in_range) < len(expected)
    expect(page.locator("#filter-summary .total")).to_have_text(
        f"{len(in_range)} call" + ("s" if len(in_range) > 1 else "")
    )
    expect(page.locator(ROWS)).to_have_count(len(in_range))
    assert set(row_ids(page)) == in_range
    assert page.locator("#filter-bar select.range").input_value() == "custom"
    api = site.api(
        "/llm/calls",
        status="succeeded,failed",
        source="billing",
        requested_by="alice",
        **{"from": iso(middle)},
    )
    assert [item["call_id"] for item in api["items"]] == row_ids(page)
    # and the facets count what the filter leaves
    expect(page.locator("#filter-summary")).to_contain_text("Duration p50/p95")


def test_pages_keep_the_exact_total_and_the_url_reproduces_the_view(seeded_site: Site, page: Page) -> None:
    site, store = seeded_site, seeded_site.store
    total = store.count("model = 'gpt-4o-mini'")
    assert total > 50
    open_llm(site, page, "model=gpt-4o-mini")
    expect(page.locator("#pager")).to_contain_text(f"1–50 of {total}")
    first_page = row_ids(page)
    page.get_by_role("button", name="Next page").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.locator("#pager")).to_contain_text(f"51–{min(100, total)} of {total}")
    second_page = row_ids(page)
    ordered = [
        call_id
        for (call_id,) in store.rows(
            "SELECT call_id FROM llm_calls WHERE model = 'gpt-4o-mini' "
            "ORDER BY enqueued_at DESC, call_id DESC"
        )
    ]
    assert first_page + second_page == ordered[: len(first_page) + len(second_page)]
    # slowest first, then a reload: the URL holds the whole view
    page.locator("#filter-bar select.sort").select_option("duration")
    expect(page).to_have_url(re.compile(r"sort=duration"))
    expect(page).not_to_have_url(re.compile(r"page=2"))
    slowest = row_ids(page)
    durations = dict(store.rows("SELECT call_id, duration_ms FROM llm_calls"))
    shown = [durations[call_id] for call_id in slowest if durations[call_id] is not None]
    assert shown == sorted(shown, reverse=True)
    page.reload()
    expect(page.locator(ROWS).first).to_be_visible()
    assert row_ids(page) == slowest
    assert page.locator("#filter-bar select.sort").input_value() == "duration"
    assert page.locator('select[data-filter="model"]').input_value() == "gpt-4o-mini"
    # back and forward walk the views
    page.go_back()
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.locator("#pager")).to_contain_text("51–")
    assert row_ids(page) == second_page
    page.go_forward()
    expect(page).to_have_url(re.compile(r"sort=duration"))
    expect(page.locator(f"{ROWS}[data-index='0']")).to_have_attribute("data-call-id", slowest[0])


def test_search_finds_chinese_text_and_clear_filters_resets(seeded_site: Site, page: Page) -> None:
    site, store = seeded_site, seeded_site.store
    open_llm(site, page)
    page.keyboard.press("/")
    expect(page.locator("#filter-bar input.search")).to_be_focused()
    page.keyboard.type("季度销售报告")
    expect(page).to_have_url(re.compile(r"q=%E5%AD%A3"))
    expect(page.locator(ROWS)).to_have_count(1)
    assert row_ids(page) == [store.manifest.calls["multi_turn"]]
    page.locator("#filter-bar").get_by_role("button", name="Clear filters").click()
    expect(page.locator(ROWS)).to_have_count(50)
    expect(page.locator("#filter-bar input.search")).to_have_value("")
    page.locator("#filter-bar input.search").fill("no call says zqxjkv")
    expect(page.locator(".state-empty")).to_contain_text("No calls match these filters")


def test_failure_groups_filter_by_error_type_and_model(seeded_site: Site, page: Page) -> None:
    site, store = seeded_site, seeded_site.store
    open_llm(site, page)
    group = page.locator("#filter-summary .chip-bad", has_text="InternalServerError")
    expect(group).to_contain_text(str(store.count("error_type = 'InternalServerError'")))
    group.click()
    expect(page).to_have_url(re.compile(r"error_type=InternalServerError"))
    expected = store.ids("error_type = 'InternalServerError' AND status = 'failed'")
    expect(page.locator(ROWS)).to_have_count(len(expected))
    assert set(row_ids(page)) == expected


def test_saved_views_are_kept_in_the_browser(seeded_site: Site, page: Page) -> None:
    site, store = seeded_site, seeded_site.store
    open_llm(site, page, "source=search&status=succeeded")
    page.get_by_role("button", name="Save view").click()
    page.locator("input.view-name").fill("search ok")
    page.locator("input.view-name").press("Enter")
    page.locator("#filter-bar").get_by_role("button", name="Clear filters").click()
    expect(page.locator(ROWS)).to_have_count(50)
    page.reload()
    page.locator("select.views").select_option(label="search ok")
    expect(page).to_have_url(re.compile(r"source=search"))
    expected = store.ids("source = 'search' AND status = 'succeeded'")
    expect(page.locator(ROWS)).to_have_count(len(expected))
    page.get_by_role("button", name="Delete view").click()
    expect(page.locator("select.views")).to_be_disabled()


def test_keyboard_moves_opens_and_closes(seeded_site: Site, page: Page) -> None:
    open_llm(seeded_site, page)
    ids = row_ids(page)
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    page.keyboard.press("j")
    expect(page.locator(f"{ROWS}.is-selected")).to_have_attribute("data-call-id", ids[1])
    page.keyboard.press("Enter")
    expect(page.locator("#drawer")).to_be_visible()
    expect(page).to_have_url(re.compile(f"call={ids[1]}"))
    page.keyboard.press("Escape")
    expect(page.locator("#drawer")).to_be_hidden()
    expect(page).not_to_have_url(re.compile("call="))


def iso(ms: int) -> str:
    from datetime import datetime, timezone

    return (
        datetime.fromtimestamp(ms / 1000, timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
