"""The admin API's errors: ``{"error": {"code", "message"}}`` for every failure, never an HTML page.

One handler for every ``HTTPException`` (400, 401, 403, 404, 405, 503, ...), one for the store's
errors (``QueryError`` → 400, ``StoreDatabaseError`` → 503, saying so when the file is damaged)
and one last resort for anything else (500, logged with its traceback; the client gets no
internals). Unknown routes and wrong methods
under the API prefix reach these handlers through the blueprint's catch-all route (``api.py``),
so a host app's own 404 page never answers an API client.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, ServiceUnavailable, Unauthorized

from admin_flask.serialize import json_response
from exporter import QueryError, StoreDamagedError, StoreDatabaseError, StoreError

logger = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    500: "internal_error",
    503: "store_unavailable",
}
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


class BadParameter(BadRequest):
    """A query parameter is invalid; ``parameter`` names it, the message says what is allowed."""

    code_name = "bad_parameter"

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class Unauthenticated(Unauthorized):
    """No (valid) credentials."""

    def __init__(self, message: str = "log in to use the LLM admin", *, bearer: bool = False) -> None:
        super().__init__(message, www_authenticate=_bearer_challenge() if bearer else None)


class NotAdmin(Forbidden):
    """Signed in, without admin rights."""

    def __init__(self, message: str = "you are signed in but not an admin of the LLM admin") -> None:
        super().__init__(message)


class StoreUnavailable(ServiceUnavailable):
    """The store cannot be read right now; the API answers 503 until it can again.

    ``reason`` says why, for the page: ``damaged`` (the file is not a sound database: it stays so
    until it is repaired or replaced), ``missing`` (no file at the store's path: deleted or moved
    away; the apps create it again), else ``unavailable`` (locked, a server down, ...: retry).
    """

    def __init__(self, message: str, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.reason = reason

    def error(self) -> dict[str, str]:
        """The ``error`` object of the contract's ``store_unavailable``, wherever it is sent: the
        503's body, the export's last line, the live feed's status."""
        return {"code": "store_unavailable", "message": _message(self), "reason": self.reason}


DAMAGED_HINT = (
    "stop the apps, move the file aside with its -wal and -shm files and restore a backup, or let "
    "the apps create a new store ('sqlite3 FILE .recover' salvages what it can); see docs/operations.md"
)


def unavailable(exc: StoreError, path: str | None = None) -> StoreUnavailable:
    """The 503 for a store error ``exc``: one saying the file is damaged when it is."""
    if isinstance(exc, StoreDamagedError):
        file = f"its file {path}" if path else "its file"
        return StoreUnavailable(
            f"the span store cannot be read: {file} is damaged ({exc}); {DAMAGED_HINT}", "damaged"
        )
    return StoreUnavailable(f"the span store cannot be read right now ({exc}); retry shortly")


def current_store_unavailable(exc: StoreError) -> StoreUnavailable:
    """The 503 for ``exc`` raised reading the current app's store (logged at WARNING)."""
    logger.warning("the LLM admin cannot read the store: %s", exc)
    from admin_flask.state import current_state  # here: the state module imports this one

    return unavailable(exc, current_state().store.path)


def error_response(status: int, code: str, message: str, **extra: object) -> Response:
    return json_response({"error": {"code": code, "message": message, **extra}}, status)


def http_error(exc: HTTPException) -> Response:
    """Any ``HTTPException`` as JSON, keeping its ``Allow`` / ``WWW-Authenticate`` headers."""
    status = exc.code or 500
    if isinstance(exc, StoreUnavailable):
        response = json_response({"error": exc.error()}, status)
    else:
        extra = {"parameter": exc.parameter} if isinstance(exc, BadParameter) else {}
        code = getattr(exc, "code_name", None) or _CODES.get(status) or _snake(exc.name)
        response = error_response(status, code, _message(exc), **extra)
    for name, value in exc.get_headers():
        if name in _KEPT_HEADERS:
            response.headers[name] = value
    return response


def query_error(exc: QueryError) -> Response:
    return error_response(400, "bad_parameter", str(exc))


def store_error(exc: StoreDatabaseError) -> Response:
    return http_error(current_store_unavailable(exc))


def unexpected_error(exc: Exception) -> Response:
    logger.exception("the LLM admin failed on a request")
    return error_response(500, "internal_error", "the LLM admin failed on this request; see its log")


def register(blueprint: Blueprint) -> None:
    """Install the JSON handlers on ``blueprint`` (the API's)."""
    blueprint.register_error_handler(HTTPException, http_error)
    blueprint.register_error_handler(QueryError, query_error)
    blueprint.register_error_handler(StoreDatabaseError, store_error)
    blueprint.register_error_handler(Exception, unexpected_error)


def _message(exc: HTTPException) -> str:
    description = exc.description or exc.name
    # Werkzeug's stock descriptions are written for HTML pages; ours are single sentences.
    return " ".join(str(description).split())


def _snake(name: str) -> str:
    return "_".join(name.lower().replace("-", " ").split())


def _bearer_challenge() -> WWWAuthenticate:
    return WWWAuthenticate("bearer", {"realm": "llm-otel admin"})
