"""The admin page: a server-rendered shell that loads plain ES modules and one stylesheet.

``page_blueprint`` serves the shell at ``/`` and its files under ``/static/``; ``LLMAdmin``
registers it under the page prefix (default ``/admin/jobs``) and guards it. The shell carries every
setting the scripts need as ``data-`` attributes of ``<body>`` (read from ``dataset`` by
``static/js/main.js``): nothing is written into a script, so the Content-Security-Policy
(``script-src 'self'; style-src 'self'``) holds. No build step, no CDN: the files in
``static/js/`` are the page (one module per concern; ``main.js`` says which).
"""

from __future__ import annotations

import flask
from werkzeug.routing import BuildError

from admin_flask.state import current_state

page_blueprint = flask.Blueprint(
    "llm_otel_admin_page",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@page_blueprint.get("/")
def index() -> str:
    """The page shell; the scripts render the tabs from the admin API."""
    state = current_state()
    root = flask.request.script_root
    return flask.render_template(
        "llm_otel_admin/page.html",
        api_prefix=root + state.api_prefix,
        page_prefix=root + state.page_prefix,
        standalone=state.standalone,
        login_url=_url("llm_otel_admin_auth.login") if state.standalone else "",
        logout_url=_url("llm_otel_admin_auth.logout") if state.standalone else "",
    )


def _url(endpoint: str) -> str:
    try:
        return flask.url_for(endpoint)
    except BuildError:  # the token login is not registered on this app
        return ""
