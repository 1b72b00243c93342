"""``LLMAdmin``: the admin as a Flask extension (``init_app``), for a host app or ``create_app``.

Usage in a host app::

    from flask_login import current_user
    from admin_flask import LLMAdmin

    admin = LLMAdmin(db="sqlite:///llm_calls.db",
                     authorize=lambda: current_user.is_admin if current_user.is_authenticated else None)
    admin.init_app(app)        # or LLMAdmin(app, ...); the page at /admin/jobs, the API at /api/admin/jobs

``init_app`` opens the store (``exporter.open_database``, schema checked by ``exporter.migrate``),
binds it to ``exporter.models.db`` (one process serves one store, see ``admin_flask.database``),
registers the API blueprint under the API prefix and the page (``admin_flask.page``) with the
login under the page prefix, guards them all, and keeps the per-app state in
``app.extensions["llm_otel_admin"]`` (``admin_flask.state.AdminState``). Keywords win over the
``LLM_OTEL_*`` keys of ``app.config`` (``admin_flask.config``), which win over the defaults.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Callable

from flask import Blueprint, Flask, Response, request

from admin_flask import auth, config, database, websocket
from admin_flask.api import api
from admin_flask.feed import Feed
from admin_flask.headers import add_security_headers
from admin_flask.state import EXTENSION_KEY, AdminState, Authorize
from admin_flask.status import status_body
from exporter import queries, retention_days_from_env

logger = logging.getLogger(__name__)

PAGE_MODULE = "admin_flask.page"
"""The module holding ``page_blueprint`` (the admin page); registered when it can be imported."""


class LLMAdmin:
    """The admin API, live feed and page of llm-otel on a Flask app; see the module docstring.

    ``db``: the store URL (else ``LLM_OTEL_DB`` in the app config or environment, else
    ``sqlite:///llm_calls.db``). ``authorize``: a callable deciding per request (True: admin, False:
    403, None: 401); without it the admin token (``LLM_OTEL_ADMIN_TOKEN``) is required.
    ``url_prefix``: the page prefix (default ``/admin/jobs``; the API goes under ``/api`` + it unless
    ``LLM_OTEL_ADMIN_API_PREFIX`` is set). ``task_url``: a template with ``{task_id}`` or a callable
    ``task_id -> url`` for the parent-task links (default: this admin's task view).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: str | None = None,
        authorize: Authorize | None = None,
        url_prefix: str | None = None,
        task_url: str | Callable[[str], str] | None = None,
    ) -> None:
        if authorize is not None and not callable(authorize):
            raise config.AdminConfigurationError(f"authorize must be a callable, not {authorize!r}")
        if task_url is not None and not (callable(task_url) or isinstance(task_url, str)):
            raise config.AdminConfigurationError(
                f"task_url must be a template string or a callable, not {task_url!r}"
            )
        self._db = db
        self._authorize = authorize
        self._url_prefix = url_prefix
        self._task_url = task_url
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("LLMAdmin is already registered on this app: call init_app once per app")
        overrides = {
            "LLM_OTEL_DB": self._db,
            "LLM_OTEL_ADMIN_PREFIX": self._url_prefix,
            "LLM_OTEL_ADMIN_TASK_URL": self._task_url if isinstance(self._task_url, str) else None,
        }
        settings = config.read_settings(app.config, overrides)
        if self._authorize is None and settings.token is None:
            raise config.AdminConfigurationError(
                "LLMAdmin needs authorize= (a callable deciding who is an admin, for a host app) or an "
                "admin token (LLM_OTEL_ADMIN_TOKEN); admin_flask.create_app() generates a token"
            )
        url = settings.db_url or os.environ.get("LLM_OTEL_DB") or database.DEFAULT_DB
        store = database.bind(url, settings.busy_timeout_ms)
        retention_days = retention_days_from_env()  # the writers' setting, as this environment has it
        state = AdminState(
            settings,
            store,
            _feed(settings, store, retention_days),
            authorize=self._authorize,
            task_url=self._task_url,
            retention_days=retention_days,
        )
        app.extensions[EXTENSION_KEY] = state
        app.config.setdefault("SOCK_SERVER_OPTIONS", dict(websocket.SERVER_OPTIONS))
        app.register_blueprint(api, url_prefix=settings.api_prefix)
        pages: list[Blueprint] = []
        if state.standalone:
            app.register_blueprint(auth.auth, url_prefix=settings.page_prefix)
            app.after_request_funcs.setdefault(auth.auth.name, []).append(add_security_headers)
        page = _page_blueprint()
        if page is not None:
            app.register_blueprint(page, url_prefix=settings.page_prefix)
            pages.append(page)
        for blueprint in pages:
            app.before_request_funcs.setdefault(blueprint.name, []).append(
                functools.partial(_guard_page, blueprint.name)
            )
            app.after_request_funcs.setdefault(blueprint.name, []).append(add_security_headers)
        auth.install_token_filter()


def _guard_page(blueprint_name: str) -> Response | None:
    if request.endpoint == f"{blueprint_name}.static":  # the page's scripts and styles are not secret
        return None
    return auth.guard_page()


def _page_blueprint() -> Blueprint | None:
    try:
        module = importlib.import_module(PAGE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != PAGE_MODULE:
            raise
        return None
    return module.page_blueprint


def _feed(settings: config.AdminSettings, store: database.AdminStore, retention_days: float) -> Feed:
    return Feed(
        read_events=queries.call_events_after,
        latest_event_id=queries.latest_event_id,
        read_status=lambda: status_body(
            "1h", stale_after_s=settings.stale_after_s, retention_days=retention_days
        ),
        require_store=store.require,
        close_connection=store.give_back_connection,
        commit_marker=store.commit_marker if store.path is not None else None,
        poll_interval_s=settings.poll_interval_s,
        status_interval_s=settings.status_interval_s,
        buffer=settings.feed_buffer,
        client_queue=settings.client_queue,
    )
