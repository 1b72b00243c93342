"""``create_app()``: the standalone admin, shared by the CLI, gunicorn and the tests.

::

    gunicorn -k gthread --threads 32 -b 127.0.0.1:8000 'admin_flask:create_app()'

Every ``LLM_OTEL_*`` key of ``admin_flask.config`` is read from the environment; ``config`` (a
mapping of the same keys, or any Flask setting) wins over it, and the keywords over both. Without a
token (``token=`` or ``LLM_OTEL_ADMIN_TOKEN``) one is generated and a login link is logged once, at
WARNING so that it shows without any logging set up (as Jupyter does). With several gunicorn
workers set ``LLM_OTEL_ADMIN_TOKEN``: each worker would otherwise make its own token.

The session cookie (``llm_otel_admin``, ``HttpOnly``, ``SameSite=Strict``; ``Secure`` with
``LLM_OTEL_ADMIN_COOKIE_SECURE``) is signed with ``LLM_OTEL_ADMIN_SECRET_KEY``, else with a key
derived from the token, so workers and restarts that share the token share the sessions.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask, redirect, request
from werkzeug.wrappers import Response

from admin_flask.config import from_environment, read_settings
from admin_flask.extension import LLMAdmin
from admin_flask.headers import add_security_headers
from admin_flask.state import EXTENSION_KEY

logger = logging.getLogger("admin_flask")

SESSION_COOKIE = "llm_otel_admin"


def create_app(
    db: str | None = None, token: str | None = None, config: Mapping[str, Any] | None = None
) -> Flask:
    """The standalone admin app over the store ``db`` (else ``LLM_OTEL_DB``, else ``sqlite:///llm_calls.db``)."""
    app = Flask(__name__, static_folder=None)  # the page serves its own files, behind its guard
    app.config.update(from_environment())
    app.config.update(config or {})
    if db is not None:
        app.config["LLM_OTEL_DB"] = db
    if token is not None:
        app.config["LLM_OTEL_ADMIN_TOKEN"] = token
    generated = not (app.config.get("LLM_OTEL_ADMIN_TOKEN") or "").strip()
    if generated:
        app.config["LLM_OTEL_ADMIN_TOKEN"] = secrets.token_urlsafe(32)
    settings = read_settings(app.config)
    app.secret_key = (
        settings.secret_key
        or hashlib.sha256(b"llm-otel admin session key\0" + str(settings.token).encode()).hexdigest()
    )
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
    )
    LLMAdmin(app)
    app.after_request(add_security_headers)  # the whole app is the admin: its other answers too
    page_prefix = settings.page_prefix

    @app.get("/")
    def root() -> Response:
        query = request.query_string.decode("latin-1")
        return redirect(request.script_root + page_prefix + "/" + (f"?{query}" if query else ""), 303)

    if generated:
        logger.warning(
            "llm-otel admin: no LLM_OTEL_ADMIN_TOKEN was set, so this one was made for this run. Log in at "
            "%s (on this server, e.g. http://127.0.0.1:8000%s)",
            login_path(app),
            login_path(app),
        )
    return app


def login_path(app: Flask) -> str:
    """The path that logs a browser in (``<page prefix>/?token=<token>``): print it, never log it twice."""
    state = app.extensions[EXTENSION_KEY]
    return f"{state.page_prefix}/?token={state.token}"
