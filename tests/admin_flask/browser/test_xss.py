"""Untrusted text is shown as text and runs nothing (issue 9, item 5).

Real calls carry script, event-handler, ``javascript:`` URL, SVG and markup payloads in every field
an app or a model controls: prompt, response, error, tool name and arguments, model, source,
requested_by, task name and id, an image URL; a scheduler snapshot carries them in a waiting call's
source, its process and the writer's last error. The test then visits every place the page shows
them (the list, the drawer, the tasks tab, the facets, the status card) and checks that each shows
the exact text, that no element was made from it, and that nothing ran: no dialog, no console or
script error, no Content-Security-Policy violation (the ``watch`` fixture), and no call of the
``window.__xss`` trap the payloads aim at.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from playwright.sync_api import Page, expect

import llm_otel
from llm_otel.testing import Behavior, FakeOpenAI
from tests.admin_flask.browser.conftest import Site, running_site
from tests.admin_flask.conftest import Store
from tests.admin_flask.seed import Manifest

PAYLOADS = {
    "script": '<script>alert("script");window.__xss("script")</script>',
    "img": "<img src=x onerror=\"alert('img');window.__xss('img')\">",
    "javascript": "javascript:alert('javascript');window.__xss('javascript')",
    "svg": "<svg onload=\"alert('svg');window.__xss('svg')\"><circle r=5 /></svg>",
    "markup": "<b>bold</b><a href=\"javascript:window.__xss('a')\">click</a>"
    "<iframe srcdoc=\"<script>parent.__xss('iframe')</script>\"></iframe>",
    "template": "{{constructor.constructor('window.__xss(\"template\")')()}} ${window.__xss('template')}",
}
ALL = " | ".join(PAYLOADS.values())
PROMPT = f"Prompt {PAYLOADS['script']} {PAYLOADS['img']}"
RESPONSE = f"Answer {PAYLOADS['svg']} {PAYLOADS['markup']}"
ERROR = f"Error {PAYLOADS['img']} {PAYLOADS['javascript']}"
MODEL = "<img src=x onerror=alert('model')>"
SOURCE = "<svg onload=alert('source')>"
USER = "<script>alert('user')</script>"
TASK = "<b onmouseover=alert('task')>task</b> <img src=x onerror=alert('task')>"
TASK_ID = "job-<i onmouseover=alert('id')>42"  # no "/": the API's task route cannot take one yet
TOOL = "<img src=x onerror=alert('tool')>"
TOOL_ARGS = {"html": PAYLOADS["markup"], "url": PAYLOADS["javascript"]}
IMAGE_URL = "javascript:alert('image')"
PROCESS = "<img src=x onerror=alert('process')>:1"
LAST_ERROR = f"disk full {PAYLOADS['svg']}"

TRAP = """
window.__xssCalls = [];
window.__xss = (where) => window.__xssCalls.push(String(where));
"""
ANY_INJECTED = (
    "img, iframe, script:not([src]), object, embed, [onerror], [onload], [onmouseover], a[href^='javascript']"
)


def record_calls(url: str, server: FakeOpenAI) -> None:
    """The hostile calls, made through llm_otel.setup() and the real openai client."""
    handle = llm_otel.setup(
        db=url, tracer_provider=TracerProvider(), scheduler=llm_otel.Scheduler(max_concurrency=1, name="xss")
    )
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-xss-0123456789", max_retries=0)
        with client, llm_otel.task(TASK, task_id=TASK_ID), llm_otel.labels(source=SOURCE, requested_by=USER):
            server.script(Behavior(content=RESPONSE))
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
            server.script(Behavior(status=400, error_message=ERROR))
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "fail"}])
            server.script(Behavior(tool_calls=[{"name": TOOL, "arguments": TOOL_ARGS}]))
            client.chat.completions.create(
                model=MODEL,
                messages=[
                    {"role": "system", "content": PAYLOADS["template"]},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look at this"},
                            {"type": "image_url", "image_url": {"url": IMAGE_URL}},
                        ],
                    },
                ],
                tools=[{"type": "function", "function": {"name": TOOL, "parameters": {"type": "object"}}}],
            )
        assert handle.flush(10)
    finally:
        llm_otel.shutdown()
        server.reset()


def write_snapshot(store: Store, source_call: str) -> None:
    """A live scheduler whose waiting call, process and writer error carry payloads."""
    now = int(time.time() * 1000)
    waiting = json.dumps([{"call_id": source_call, "source": SOURCE, "since": now - 1500}])
    with contextlib.closing(sqlite3.connect(store.url.removeprefix("sqlite:///"))) as connection, connection:
        connection.execute(
            "INSERT INTO llm_scheduler_snapshots (process, scheduler, queue_depth, in_flight, "
            "max_concurrency, min_interval, max_queue, dispatched_total, last_dispatch_at, oldest_wait_ms, "
            "waiting, store_dropped, store_last_error, heartbeat_at) "
            "VALUES (?, ?, 1, 1, 1, 0.2, 1000, 3, ?, 1500, ?, 2, ?, ?)",
            (
                PROCESS,
                PAYLOADS["img"],
                now - 2000,
                waiting,
                LAST_ERROR,
                now + 3_600_000,
            ),  # live all module long
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI) -> Iterator[Site]:
    path: Path = tmp_path_factory.mktemp("xss") / "store.db"
    url = f"sqlite:///{path}"
    record_calls(url, fake_openai_server)
    store = Store("sqlite", url, Manifest())
    [(first_call,)] = store.rows("SELECT call_id FROM llm_calls ORDER BY enqueued_at LIMIT 1")
    write_snapshot(store, first_call)
    with running_site(store) as running:
        yield running


@pytest.fixture
def trapped(page: Page) -> Page:
    page.add_init_script(TRAP)
    return page


def assert_harmless(page: Page) -> None:
    assert page.evaluate("window.__xssCalls") == []
    assert page.locator(ANY_INJECTED).count() == 0


def call_ids(site: Site) -> dict[str, str]:
    rows = site.store.rows("SELECT call_id, status, response_preview FROM llm_calls ORDER BY enqueued_at")
    assert len(rows) == 3
    (ok, _, _), (failed, _, _), (tool, _, _) = rows
    return {"ok": ok, "failed": failed, "tool": tool}


def test_the_list_and_the_facets_show_payloads_as_text(site: Site, trapped: Page) -> None:
    page = trapped
    site.open(page, "tab=llm")
    rows = page.locator("#call-list tr.call-row")
    expect(rows).to_have_count(3)
    ids = call_ids(site)
    ok = page.locator(f'tr[data-call-id="{ids["ok"]}"]')
    expect(ok.locator("td").nth(2)).to_have_text(MODEL)
    expect(ok.locator("td").nth(3)).to_have_text(SOURCE)
    expect(ok.locator("td").nth(4)).to_have_text(USER)
    expect(ok.locator(".task-tag")).to_have_text(TASK)
    [(prompt_preview, response_preview)] = site.store.rows(
        "SELECT prompt_preview, response_preview FROM llm_calls WHERE call_id = ?", ids["ok"]
    )
    expect(ok.locator(".preview")).to_have_text(f"{TASK}{prompt_preview} → {response_preview}")
    failed = page.locator(f'tr[data-call-id="{ids["failed"]}"]')
    expect(failed.locator(".preview")).to_contain_text(ERROR)
    for name, value in (
        ("source", SOURCE),
        ("requested_by", USER),
        ("model", MODEL),
        ("error_type", "BadRequestError"),
    ):
        options = page.locator(f'select[data-filter="{name}"] option').all_text_contents()
        assert any(option.startswith(value) for option in options), (name, options)
    page.locator('select[data-filter="source"]').select_option(SOURCE)
    expect(page.locator("#filter-summary .total")).to_have_text("3 calls")
    assert SOURCE in page.url or "source=%3Csvg" in page.url
    page.reload()
    expect(rows).to_have_count(3)
    assert_harmless(page)


def test_the_drawer_shows_prompt_response_error_and_tool_arguments_as_text(site: Site, trapped: Page) -> None:
    page = trapped
    ids = call_ids(site)
    site.open(page, f"tab=llm&call={ids['ok']}")
    drawer = page.locator("#drawer")
    turns = drawer.locator(".conversation .turn")
    expect(turns.nth(0).locator("pre.text")).to_have_text(PROMPT)
    expect(turns.nth(1).locator("pre.text")).to_have_text(RESPONSE)
    expect(drawer.locator(".drawer-title")).to_contain_text(MODEL)
    expect(drawer.locator("section.details")).to_contain_text(SOURCE)
    expect(drawer.locator("section.details")).to_contain_text(USER)
    expect(drawer.locator("section.details")).to_contain_text(TASK)
    drawer.locator("details.raw > summary").click()
    raw = json.loads(drawer.locator("details.raw pre").inner_text())
    assert raw["input_messages"][0]["parts"][0]["content"] == PROMPT
    assert_harmless(page)

    site.open(page, f"tab=llm&call={ids['failed']}")
    [(error_message,)] = site.store.rows(
        "SELECT error_message FROM llm_calls WHERE call_id = ?", ids["failed"]
    )
    assert ERROR in error_message
    expect(drawer.locator(".drawer-error pre.text")).to_have_text(error_message)
    assert_harmless(page)

    site.open(page, f"tab=llm&call={ids['tool']}")
    card = drawer.locator(".tool-card.tool-call")
    expect(card.locator(".tool-name")).to_have_text(TOOL)
    assert json.loads(card.locator("pre.json").inner_text()) == TOOL_ARGS
    expect(drawer.locator(".conversation .turn").first.locator("pre.text")).to_have_text(PAYLOADS["template"])
    expect(drawer.locator(".attachment")).to_contain_text(IMAGE_URL)
    assert drawer.locator(".attachment a").count() == 0  # a URL from a message is never a link
    params = json.loads(drawer.locator("section.params pre").inner_text())
    assert params["tools"][0]["function"]["name"] == TOOL
    assert_harmless(page)


def test_the_tasks_tab_and_view_parent_task_show_the_task_as_text(site: Site, trapped: Page) -> None:
    page = trapped
    ids = call_ids(site)
    site.open(page, f"tab=llm&call={ids['ok']}")
    page.get_by_role("link", name="View parent task").click()
    row = page.locator("tr.task-row.is-highlighted")
    expect(row.locator("td").nth(0)).to_have_text(TASK)
    expect(row.locator("td").nth(1)).to_have_text(TASK_ID)
    card = page.locator(".task-card")
    expect(card.locator("h2")).to_have_text(TASK)
    expect(card.locator(".tl-lane")).to_have_count(3)
    expect(card.locator(".tl-lane").first).to_contain_text(MODEL)
    assert page.evaluate("new URLSearchParams(location.search).get('task')") == TASK_ID
    page.locator("#task-search").fill("<i onmouseover")
    expect(page.locator("tr.task-row")).to_have_count(1)
    assert_harmless(page)


def test_the_status_card_shows_process_waiting_source_and_writer_error_as_text(
    site: Site, trapped: Page
) -> None:
    page = trapped
    site.open(page, "tab=llm")
    card = page.locator("#status-card")
    row = card.locator("table.schedulers tbody tr").first
    expect(row.locator("td").nth(0)).to_have_text(PROCESS)
    expect(row.locator("td").nth(1)).to_have_text(PAYLOADS["img"])
    expect(row.locator(".waiting .chip")).to_contain_text(SOURCE)
    expect(card.locator(".alert")).to_contain_text(LAST_ERROR)
    row.locator(".waiting .chip").click()
    expect(page.locator("#drawer .drawer-title")).to_contain_text(MODEL)
    assert_harmless(page)
