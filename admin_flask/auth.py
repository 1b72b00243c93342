"""Who may use the admin: an ``authorize`` callable in a host app, else the admin token.

- Host app: ``LLMAdmin(authorize=callable)``. The callable takes no arguments, runs inside the
  request and returns True (an admin), False (signed in, not an admin: 403) or None (anonymous:
  401); it may also raise ``werkzeug.exceptions.Unauthorized`` / ``Forbidden`` itself.
- Token (``create_app``, or ``LLM_OTEL_ADMIN_TOKEN`` without ``authorize``): the token is accepted
  as ``Authorization: Bearer <token>``, or exchanged on the login page for a signed ``HttpOnly``
  session cookie (Flask's session); ``GET <page>/?token=<token>`` logs in once and redirects to the
  same URL without the token. Tokens are compared in constant time (``hmac.compare_digest``); the
  session holds an HMAC of the token, so a new token logs every browser out.

``check_admin()`` guards the API (JSON 401/403) and the websocket handshake; ``guard_page()`` the
pages (anonymous visitors are sent to the login page). ``TokenFilter`` keeps the token out of the
request logs of Werkzeug and gunicorn.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request, session, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import Forbidden, Unauthorized

from admin_flask.errors import NotAdmin, Unauthenticated
from admin_flask.login_backoff import LoginBackoff, TooManyAttempts
from admin_flask.state import EXTENSION_KEY, AdminState, current_state

SESSION_KEY = "llm_otel_admin"
TOKEN_PARAM = "token"
LOGGED_LOGGERS = ("werkzeug", "gunicorn.access")
"""The request loggers that print URLs, which ``TokenFilter`` is installed on."""

BACKOFF_KEY = "llm_otel_admin_login_backoff"
"""Where an app keeps its ``LoginBackoff``, in ``app.extensions``."""

auth = Blueprint("llm_otel_admin_auth", __name__, template_folder="templates")


@auth.record_once
def _make_backoff(setup: BlueprintSetupState) -> None:
    """One ``LoginBackoff`` per app that uses the token login (this blueprint is registered then)."""
    settings = setup.app.extensions[EXTENSION_KEY].settings
    setup.app.extensions[BACKOFF_KEY] = LoginBackoff(
        attempts=settings.login_attempts,
        backoff_s=settings.login_backoff_s,
        backoff_max_s=settings.login_backoff_max_s,
        window_s=settings.login_window_s,
    )


def check_admin() -> None:
    """Return when the request comes from an admin; raise ``Unauthenticated`` (401) or ``NotAdmin`` (403)."""
    state = current_state()
    if state.authorize is not None:
        try:
            verdict = state.authorize()
        except Forbidden as exc:
            raise NotAdmin(exc.description or NotAdmin.description) from exc
        except Unauthorized as exc:
            raise Unauthenticated(exc.description or Unauthenticated.description) from exc
        if verdict is None:
            raise Unauthenticated()
        if not verdict:
            raise NotAdmin()
        return
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and _token_accepted(state, credentials.strip()):
            return
        raise Unauthenticated("the Authorization header does not hold the admin token", bearer=True)
    if _session_matches(state):
        return
    raise Unauthenticated("log in with the admin token (Authorization: Bearer <token>)", bearer=True)


def guard_page() -> Response | None:
    """``before_request`` of the pages: the ``?token=`` login, else a redirect of anonymous visitors."""
    state = current_state()
    if state.standalone and request.method == "GET" and TOKEN_PARAM in request.args:
        try:
            accepted = _token_accepted(state, request.args.get(TOKEN_PARAM, ""))
        except TooManyAttempts as wait:
            return _too_many_attempts_page(state, wait)
        if accepted:
            _log_in(state)
            return redirect(_without_token(), 303)
        return _login_page(state, "That login link holds a wrong or expired token.", status=401)
    try:
        check_admin()
    except TooManyAttempts as wait:
        return _too_many_attempts_page(state, wait)
    except Unauthenticated:
        if state.standalone:
            return redirect(url_for("llm_otel_admin_auth.login", next=_here()), 303)
        if state.settings.login_url:
            separator = "&" if "?" in state.settings.login_url else "?"
            return redirect(f"{state.settings.login_url}{separator}{urlencode({'next': _here()})}", 303)
        raise
    return None


@auth.route("/login", methods=["GET", "POST"])
def login() -> Response:
    state = current_state()
    target = _safe_next(request.values.get("next"), state)
    if request.method == "POST":
        try:
            accepted = _token_accepted(state, request.form.get(TOKEN_PARAM, "").strip())
        except TooManyAttempts as wait:
            return _too_many_attempts_page(state, wait, target)
        if accepted:
            _log_in(state)
            return redirect(target, 303)
        return _login_page(state, "That token is not the admin token.", target, status=401)
    if _session_matches(state):
        return redirect(target, 303)
    return _login_page(state, None, target)


@auth.route("/logout", methods=["POST"])
def logout() -> Response:
    session.pop(SESSION_KEY, None)
    return redirect(url_for("llm_otel_admin_auth.login"), 303)


class TokenFilter(logging.Filter):
    """Rewrites ``token=<value>`` in a log record's message to ``token=[redacted]``."""

    _PATTERN = re.compile(r"([?&;]token=)[^&;\s\"']*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if "token=" in message.lower():
            record.msg, record.args = self._PATTERN.sub(r"\1[redacted]", message), None
        return True


def install_token_filter() -> None:
    """Put one ``TokenFilter`` on each request logger (idempotent)."""
    for name in LOGGED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, TokenFilter) for existing in logger.filters):
            logger.addFilter(TokenFilter())


def _token_accepted(state: AdminState, given: str) -> bool:
    """Whether ``given`` is the token, counted by the back-off; raises ``TooManyAttempts`` while this
    client address must wait (the token is then not compared)."""
    backoff: LoginBackoff = current_app.extensions[BACKOFF_KEY]
    address = request.remote_addr
    backoff.check(address)
    if _token_matches(state, given):
        backoff.succeeded(address)
        return True
    backoff.failed(address)
    return False


def _token_matches(state: AdminState, given: str) -> bool:
    expected = state.token
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _fingerprint(state: AdminState) -> str:
    key = current_app.secret_key
    if not key:
        raise RuntimeError(
            "the admin's token login needs a session secret: set app.secret_key (or SECRET_KEY), "
            "or use admin_flask.create_app(), which sets one"
        )
    key = key if isinstance(key, bytes) else str(key).encode()
    return hmac.new(key, str(state.token).encode(), hashlib.sha256).hexdigest()


def _session_matches(state: AdminState) -> bool:
    stored = session.get(SESSION_KEY)
    return isinstance(stored, str) and hmac.compare_digest(stored, _fingerprint(state))


def _log_in(state: AdminState) -> None:
    session[SESSION_KEY] = _fingerprint(state)


def _login_page(
    state: AdminState, error: str | None, target: str | None = None, *, status: int = 200
) -> Response:
    body = render_template(
        "llm_otel_admin/login.html",
        error=error,
        next=target or _safe_next(_without_token(), state),
        action=url_for("llm_otel_admin_auth.login"),
    )
    return Response(body, status=status, mimetype="text/html")


def _too_many_attempts_page(state: AdminState, wait: TooManyAttempts, target: str | None = None) -> Response:
    message = f"Too many wrong tokens were sent from your address. Try again in {wait.retry_after_s} s."
    response = _login_page(state, message, target, status=429)
    response.headers["Retry-After"] = str(wait.retry_after_s)
    return response


def _here() -> str:
    query = request.query_string.decode("latin-1")
    return request.script_root + request.path + (f"?{query}" if query else "")


def _without_token() -> str:
    kept = [(name, value) for name, value in request.args.items(multi=True) if name != TOKEN_PARAM]
    return request.script_root + request.path + (f"?{urlencode(kept)}" if kept else "")


def _safe_next(target: str | None, state: AdminState) -> str:
    """``target`` when it is a path on this site, else the page (never another origin)."""
    local = bool(target) and target.startswith("/") and not target.startswith("//")
    if local and "\\" not in target and not any(ord(char) < 32 for char in target):
        return target
    return request.script_root + state.page_prefix + "/"
