"""The detail drawer and "View parent task", over real calls recorded through the real openai client.

Every figure the drawer shows is compared with the stored row (plain SQL on the store file).
"""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect

from tests.admin_flask.browser.conftest import Site

DRAWER = "#drawer"


def open_call(site: Site, page: Page, role: str) -> tuple[str, dict]:
    call_id = site.store.manifest.calls[role]
    site.open(page, f"tab=llm&call={call_id}")
    expect(page.locator(f"{DRAWER} .drawer-title")).to_be_visible()
    names = [
        *("wait_ms", "first_token_ms", "duration_ms", "retry_count"),
        *("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"),
        *("error_type", "error_message", "status", "model"),
    ]
    [row] = site.store.rows(f"SELECT {', '.join(names)} FROM llm_calls WHERE call_id = ?", call_id)
    return call_id, dict(zip(names, row, strict=True))


def ms(value: int | None) -> str:
    assert value is None or value < 1000, "the seeded calls are quick; longer ones need the page's formatting"
    return "–" if value is None else f"{value:,} ms"


def stat(page: Page, label: str):
    return page.locator(f"{DRAWER} .stat", has=page.locator(".stat-label", has_text=re.compile(f"^{label}$")))


def test_a_multi_turn_call_shows_its_conversation_latency_and_tokens(seeded_site: Site, page: Page) -> None:
    call_id, row = open_call(seeded_site, page, "multi_turn")
    drawer = page.locator(DRAWER)
    expect(drawer.locator(".drawer-title .pill")).to_have_text("Succeeded")
    expect(drawer.locator(".drawer-title")).to_contain_text(row["model"])
    turns = drawer.locator(".conversation .turn")
    expect(turns).to_have_count(5)  # system, user, assistant, user, then the response
    expect(turns.nth(0).locator(".role")).to_have_text("System")
    expect(turns.nth(0)).to_contain_text("You are a terse analyst.")
    expect(turns.nth(1)).to_contain_text("请帮我总结一下第三季度销售报告的要点")
    expect(turns.nth(2).locator(".role")).to_have_text("Assistant")
    expect(turns.nth(3)).to_contain_text("Revenue was 4.2M; summarise in one line.")
    expect(turns.nth(4)).to_have_class(re.compile("is-output"))
    expect(turns.nth(4)).to_contain_text("The third quarter grew 12%.")
    expect(turns.nth(4).locator(".badge")).to_have_text("stop")
    expect(stat(page, "Queue wait").locator(".stat-value")).to_have_text(ms(row["wait_ms"]))
    expect(stat(page, "Duration").locator(".stat-value")).to_have_text(ms(row["duration_ms"]))
    expect(stat(page, "Input tokens").locator(".stat-value")).to_have_text(f"{row['input_tokens']:,}")
    expect(stat(page, "Output tokens").locator(".stat-value")).to_have_text(f"{row['output_tokens']:,}")
    expect(stat(page, "Cached tokens").locator(".stat-value")).to_have_text(f"{row['cached_tokens']:,}")
    expect(stat(page, "Reasoning tokens").locator(".stat-value")).to_have_text(f"{row['reasoning_tokens']:,}")
    assert row["cached_tokens"] == 8 and row["reasoning_tokens"] == 5  # as the fake server reported them
    params = drawer.locator("section.params pre")
    assert json.loads(params.inner_text())["temperature"] == 0.2
    expect(drawer.locator("section.details")).to_contain_text(call_id)
    [(trace_id, span_id)] = seeded_site.store.rows(
        "SELECT trace_id, span_id FROM llm_calls WHERE call_id = ?", call_id
    )
    expect(drawer.locator("section.details")).to_contain_text(trace_id)
    expect(drawer.locator("section.details")).to_contain_text(span_id)
    # the raw JSON is the API's detail, rendered when opened
    drawer.locator("details.raw > summary").click()
    raw = json.loads(drawer.locator("details.raw pre").inner_text())
    assert raw == seeded_site.api(f"/llm/calls/{call_id}")


def test_retries_show_on_the_timeline_with_attempt_cause_and_backoff(seeded_site: Site, page: Page) -> None:
    call_id, row = open_call(seeded_site, page, "retried")
    events = seeded_site.store.rows(
        "SELECT kind, data FROM llm_call_events WHERE call_id = ? ORDER BY id", call_id
    )
    timeline = page.locator(f"{DRAWER} ol.events li")
    expect(timeline).to_have_count(len(events))
    kinds = {
        "queued": "Queued",
        "dispatched": "Dispatched",
        "retry": "Retry",
        "succeeded": "Succeeded",
        "first_token": "First token",
    }
    assert timeline.locator(".event-kind").all_inner_texts() == [kinds[kind] for kind, _ in events]
    retries = [json.loads(data) for kind, data in events if kind == "retry"]
    assert len(retries) == row["retry_count"] == 2
    for index, retry in enumerate(retries):
        item = page.locator(f"{DRAWER} li.ev-retry").nth(index)
        expect(item).to_contain_text(f"attempt {retry['attempt']}")
        expect(item).to_contain_text(f"cause HTTP {retry['status_code']}")
        expect(item).to_contain_text(f"backoff {ms(retry['backoff_ms'])}")
    expect(stat(page, "Retries").locator(".stat-value")).to_have_text("2")


def test_a_failed_call_shows_its_full_error(seeded_site: Site, page: Page) -> None:
    _, row = open_call(seeded_site, page, "failed")
    error = page.locator(f"{DRAWER} .drawer-error")
    expect(error).to_contain_text(row["error_type"])
    expect(error).to_contain_text(row["error_message"])
    assert "upstream exploded" in row["error_message"]
    expect(page.locator(f"{DRAWER} li.ev-failed")).to_have_count(1)
    expect(page.locator(f"{DRAWER} .drawer-title .pill")).to_have_text("Failed")


def test_a_tool_call_shows_its_arguments_as_formatted_json(seeded_site: Site, page: Page) -> None:
    call_id, _ = open_call(seeded_site, page, "tool_call")
    card = page.locator(f"{DRAWER} .tool-card.tool-call")
    expect(card).to_have_count(1)
    expect(card.locator(".tool-name")).to_have_text("get_weather")
    assert card.locator("pre.json").inner_text() == json.dumps({"city": "Paris"}, indent=2)
    detail = seeded_site.api(f"/llm/calls/{call_id}")
    [part] = detail["output_messages"][0]["parts"]
    expect(card.locator(".tool-id")).to_have_text(part["id"])


def test_view_parent_task_opens_and_highlights_it_with_its_calls(seeded_site: Site, page: Page) -> None:
    call_id, _ = open_call(seeded_site, page, "retried")
    page.get_by_role("link", name="View parent task").click()
    expect(page).to_have_url(re.compile(r"tab=tasks&task=job-42"))
    expect(page.locator(DRAWER)).to_be_hidden()
    expect(page.locator('[data-tab="tasks"]')).to_have_attribute("aria-selected", "true")
    row = page.locator('tr.task-row[data-task-id="job-42"]')
    expect(row).to_have_class(re.compile("is-highlighted"))
    expect(page.locator("tr.task-row.is-highlighted")).to_have_count(1)
    card = page.locator('.task-card[data-task-id="job-42"]')
    expect(card).to_be_visible()
    expect(card.locator("h2")).to_have_text("nightly-digest")
    lanes = card.locator(".tl-lane")
    expected = [
        call
        for (call,) in seeded_site.store.rows(
            "SELECT call_id FROM llm_calls WHERE parent_task_id = 'job-42' ORDER BY enqueued_at, call_id"
        )
    ]
    expect(lanes).to_have_count(len(expected))
    assert lanes.evaluate_all("lanes => lanes.map(l => l.dataset.callId)") == expected
    expect(card.locator(f'.tl-lane[data-call-id="{call_id}"]')).to_have_class(re.compile("is-focus"))
    # a lane opens its call's drawer
    lanes.first.click()
    expect(page).to_have_url(re.compile(f"call={expected[0]}"))
    expect(page.locator(f"{DRAWER} .drawer-title")).to_be_visible()
