"""The llm-otel admin: JSON API, live feed (websocket and long poll) and page over the span store.

Needs the ``admin`` extra: ``pip install 'llm-otel[admin]'`` (Flask and flask-sock).

In a host app (its own login decides who is an admin)::

    from admin_flask import LLMAdmin

    LLMAdmin(app, db="sqlite:///llm_calls.db", authorize=lambda: current_user.is_admin)

Standalone (a token login; without a token one is generated and a login link logged)::

    gunicorn -k gthread --threads 32 'admin_flask:create_app()'

Configuration: the ``LLM_OTEL_*`` keys of ``admin_flask.config`` (docs/configuration.md). Routes and
shapes: docs/contracts/http-apis.md, and the OpenAPI document at ``/api/admin/jobs/llm/openapi.json``.
Authorization recipes: docs/admin.md. One process serves one store (``admin_flask.database``).
"""

try:
    import flask  # noqa: F401
    import flask_sock  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"the llm-otel admin needs Flask and flask-sock ({exc.name} is missing): "
        "pip install 'llm-otel[admin]'"
    ) from exc

from admin_flask.app import create_app
from admin_flask.config import AdminConfigurationError
from admin_flask.extension import LLMAdmin

__all__ = ["AdminConfigurationError", "LLMAdmin", "create_app"]
