"""Fixtures of the admin page's browser tests: a real Chromium (pytest-playwright), real admin servers.

- Chromium is Debian's ``/usr/bin/chromium`` when present (else Playwright's own), launched with
  the flags this machine needs. Playwright lives for this package only (``playwright`` and
  ``browser`` are package-scoped here): its sync API leaves an asyncio loop marked running on the
  thread, which would break the asyncio tests that run after these.
- ``site_for(url)``: the standalone admin (``admin_flask.create_app``) over a store, on a threaded
  Werkzeug server on a free port of 127.0.0.1, until the module (or test) ends. The admin binds
  ``exporter.models.db`` (one store per process), so a module runs one site at a time.
- ``watch`` (autouse): every test's ``page`` fails the test if a dialog opens, a script error or
  console error happens, or the Content-Security-Policy blocks anything; a test that expects HTTP
  errors lets their console lines through with ``watch.allow(...)``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserType, Page, Playwright, expect, sync_playwright
from werkzeug.serving import make_server

from admin_flask import create_app
from admin_flask.state import EXTENSION_KEY
from tests.admin_flask.conftest import API, FAST_FEED, TOKEN, Store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PAGE = "/admin/jobs/"
VIEWPORT = {"width": 1280, "height": 800}
expect.set_options(timeout=10_000)


# -- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    args = {**browser_type_launch_args, "args": CHROMIUM_ARGS}
    if os.path.exists(CHROMIUM):
        args["executable_path"] = CHROMIUM
    return args


@pytest.fixture(scope="package")
def browser_context_args() -> dict[str, Any]:
    return {"viewport": VIEWPORT, "locale": "en-US", "timezone_id": "Europe/Berlin"}


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    pw = sync_playwright().start()
    yield pw
    pw.stop()


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return getattr(playwright, browser_name or "chromium")


@pytest.fixture(scope="package")
def browser(browser_type: BrowserType, browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    browser = browser_type.launch(**browser_type_launch_args)
    yield browser
    browser.close()


# -- what a page must never do ----------------------------------------------------------------------

_REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.__llmOtelCsp(`${event.violatedDirective} blocked ${event.blockedURI || "inline"} (${where})`);
});
"""


@dataclass
class Watch:
    """What went wrong on a page: dialogs, script errors, console errors, CSP violations."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def attach(self, page: Page) -> Watch:
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.expose_function("__llmOtelCsp", lambda text: self.violations.append(text))
        page.add_init_script(_REPORT_CSP)
        return self

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def allow(self, pattern: str) -> None:
        """Console errors matching ``pattern`` are expected (e.g. the browser's line for a 503)."""
        self.allowed.append(re.compile(pattern))

    def problems(self) -> list[str]:
        errors = [e for e in self.errors if not any(p.search(e) for p in self.allowed)]
        return [*(f"dialog {d}" for d in self.dialogs), *errors, *(f"CSP {v}" for v in self.violations)]


@pytest.fixture(autouse=True)
def watch(page: Page) -> Watch:
    """Checked when the test's body ends (``pytest_runtest_call``), before servers stop: a server
    stopping under an open page is not the page's fault."""
    return Watch().attach(page)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    watching = getattr(item, "funcargs", {}).get("watch")
    if isinstance(watching, Watch):
        item.funcargs["page"].wait_for_timeout(50)  # let a last console message arrive
        assert watching.problems() == [], "the page misbehaved"
    return result


# -- admin servers ----------------------------------------------------------------------------------


@dataclass
class Site:
    """A running admin: ``url`` (its origin), ``api(path, **params)`` (JSON, with the token)."""

    app: Flask
    url: str
    store: Store
    client: httpx2.Client
    pages: list[Page] = field(default_factory=list)

    def api(self, path: str, **params: Any) -> Any:
        response = self.client.get(API + path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def open(self, page: Page, query: str = "", *, login: bool = True) -> Page:
        """Open the page with ``query`` (``tab=llm&...``), logged in by the one-time ``?token=`` link."""
        separator = "&" if query else ""
        self.pages.append(page)
        page.goto(f"{self.url}{PAGE}?{f'token={TOKEN}{separator}' if login else ''}{query}")
        return page


@contextlib.contextmanager
def running_site(store: Store, **config: Any) -> Iterator[Site]:
    app = create_app(db=store.url, token=TOKEN, config={**FAST_FEED, **config})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    client = httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    site = Site(app, url, store, client)
    try:
        yield site
    finally:
        for page in site.pages:  # leave the admin before it stops: a page is not to blame for that
            if not page.is_closed():
                page.goto("about:blank")
        client.close()
        app.extensions[EXTENSION_KEY].close()
        server.shutdown()
        server.server_close()
        thread.join(5)


def copy_store(source: Store, directory: Path) -> Store:
    """A private copy of a SQLite store (tests may write to it)."""
    target = directory / "store.db"
    source_path = source.url.removeprefix("sqlite:///")
    with (
        contextlib.closing(sqlite3.connect(source_path)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
    return Store("sqlite", f"sqlite:///{target}", source.manifest)


@pytest.fixture(scope="module")
def seeded_site(seeded: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The admin over a copy of the admin tests' seeded store (real calls), for the whole module."""
    with running_site(copy_store(seeded, tmp_path_factory.mktemp("page"))) as site:
        yield site
