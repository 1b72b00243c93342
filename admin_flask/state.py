"""``AdminState``: what one app's admin knows, at ``current_app.extensions["llm_otel_admin"]``.

The page reads its settings here to hand them to its scripts as ``data-`` attributes:
``api_prefix``, ``page_prefix``, ``standalone`` (token login: show a logout button, which posts to
``url_for("llm_otel_admin_auth.logout")``), ``task_url`` (the task link template, or None when a
callable makes the links; a call's detail carries its resolved ``task.url`` either way) and
``database`` (the peewee database read).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

import peewee
from flask import current_app, has_request_context, request

from admin_flask.config import AdminSettings
from admin_flask.database import AdminStore

if TYPE_CHECKING:
    from admin_flask.feed import Feed

EXTENSION_KEY = "llm_otel_admin"

Authorize = Callable[[], "bool | None"]


class AdminState:
    """Per-app state of ``LLMAdmin``; see the module docstring for what the page may read."""

    def __init__(
        self,
        settings: AdminSettings,
        store: AdminStore,
        feed: Feed,
        *,
        authorize: Authorize | None,
        task_url: str | Callable[[str], str] | None,
        retention_days: float | None,
    ) -> None:
        self.settings = settings
        self.retention_days = retention_days
        self.store = store
        self.feed = feed
        self.authorize = authorize
        self._task_url = task_url if task_url is not None else settings.task_url

    @property
    def api_prefix(self) -> str:
        return self.settings.api_prefix

    @property
    def page_prefix(self) -> str:
        return self.settings.page_prefix

    @property
    def standalone(self) -> bool:
        """True when the token login is in use (no ``authorize`` callable): the page offers logout."""
        return self.authorize is None

    @property
    def token(self) -> str | None:
        return self.settings.token if self.standalone else None

    @property
    def database(self) -> peewee.Database:
        return self.store.database

    @property
    def task_url(self) -> str | None:
        """The task link template (with ``{task_id}``); None when a callable makes the links."""
        if callable(self._task_url):
            return None
        return self._task_url or self.page_prefix + "/?tab=tasks&task={task_id}"

    def task_link(self, task_id: str) -> str:
        """The link of a task, from the callable or the template (``task_id`` URL-quoted)."""
        if callable(self._task_url):
            return str(self._task_url(task_id))
        link = str(self.task_url).replace("{task_id}", quote(task_id, safe=""))
        if link.startswith("/") and not link.startswith("//") and has_request_context():
            link = request.script_root + link  # the app may be mounted below a path
        return link

    def close(self) -> None:
        """Stop the live feed (its reader thread and its clients) and let another app bind a store."""
        self.feed.close()
        self.store.released = True
        self.store.close_idle()


def current_state() -> AdminState:
    return current_app.extensions[EXTENSION_KEY]
