"""The admin's JSON API (blueprint ``llm_otel_admin_api``, under the API prefix).

Each route parses its query with its ``params`` declaration, asks ``exporter.queries`` and answers
with ``serialize``; the routes, parameters and shapes are in docs/contracts/http-apis.md and in
the OpenAPI document served at ``llm/openapi.json``. Every request is authorized first
(``auth.check_admin``); the routes that read the store then check that it is readable (503 if not).
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import PathConverter, RequestRedirect

from admin_flask import errors, params, serialize, websocket
from admin_flask.auth import check_admin
from admin_flask.headers import add_security_headers
from admin_flask.state import current_state
from admin_flask.status import status_body
from exporter import StoreError, queries

api = Blueprint("llm_otel_admin_api", __name__)


class AnyTextPathConverter(PathConverter):
    """A path that may hold any character: Werkzeug's ``path`` stops at a newline, so a task id or
    URL holding one fell through to the host app's HTML 404."""

    regex = r"(?s:[^/].*?)"


# Before the routes: a rule finds its converter when it is added.
api.record_once(lambda state: state.app.url_map.converters.setdefault("any_text", AnyTextPathConverter))
errors.register(api)
api.after_request(add_security_headers)

_NO_STORE = frozenset({"openapi", "unknown"})
"""Endpoints that answer without reading the store."""
_HELD_OPEN = frozenset({"events", "live"})
"""Endpoints that hold their request for seconds or for as long as the client stays (the long poll,
the websocket): they take no kept connection, which would be lent for all that time."""
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
EXPORT_CHUNK_BYTES = 64 * 1024
"""The export is written in pieces of about this size: one write per line cost more than the line."""


@api.before_request
def _authorize_and_check_store() -> None:
    check_admin()
    endpoint = (request.endpoint or "").rpartition(".")[2]
    if endpoint not in _NO_STORE:
        store = current_state().store
        store.require()
        if endpoint not in _HELD_OPEN:
            store.take_connection()


@api.teardown_request
def _give_back_connection(_exc: BaseException | None) -> None:
    current_state().store.give_back_connection()


websocket.register(api)  # WS llm/ws: authorized by the hook above, subscribed by websocket's own


@api.get("/llm/status")
def status() -> Response:
    args = params.STATUS.parse(request.args)
    state = current_state()
    body = status_body(
        args["window"], stale_after_s=state.settings.stale_after_s, retention_days=state.retention_days
    )
    return serialize.json_response(body)


@api.get("/llm/calls")
def calls() -> Response:
    args = params.CALL_LIST.parse(request.args)
    page = queries.list_calls(**args)
    return _page_response(page, serialize.call_summary)


def _page_response(page: dict[str, Any], item: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
    """A page of the store (``items``, ``total``, ``page``, ``page_size``) with each item serialized."""
    items = [item(row) for row in page["items"]]
    return serialize.json_response(
        {"items": items, "total": page["total"], "page": page["page"], "page_size": page["page_size"]}
    )


@api.get("/llm/facets")
def facets() -> Response:
    args = params.FACETS.parse(request.args)
    window = args.pop("window")
    if window != "all":
        since = _now_ms() - params.WINDOWS_MS[window]
        args["since_ms"] = max(since, args["since_ms"] or since)
        if args["until_ms"] is not None and args["since_ms"] > args["until_ms"]:
            args["since_ms"] = args["until_ms"]  # the window ends before the range starts: no calls
    facets = queries.call_facets(**args)
    body = {
        "total": facets["total"],
        "statuses": facets["statuses"],
        **{
            name: facets[name]
            for name in ("sources", "requested_by", "models", "error_types", "failures_by_model")
        },
        **{
            name: serialize.percentiles(facets[name]) for name in ("wait_ms", "first_token_ms", "duration_ms")
        },
        "error_rate": facets["error_rate"],
    }
    return serialize.json_response(body)


@api.get("/llm/calls/export")
def export() -> Response:
    args = params.EXPORT.parse(request.args)
    args.pop("format")
    rows = queries.iter_calls(**args)
    first = next(rows, None)  # a store that cannot be read answers 503 here, before the body starts
    lines = itertools.chain([] if first is None else [first], rows)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    response = Response(stream_with_context(_jsonl(lines)), mimetype="application/x-ndjson")
    response.headers["Content-Disposition"] = f'attachment; filename="llm-calls-{stamp}.jsonl"'
    return response


@api.get("/llm/calls/<call_id>")
def call(call_id: str) -> Response:
    params.NO_PARAMS.parse(request.args)
    row = queries.get_call(call_id) if _plausible_id(call_id) else None
    if row is None:
        raise NotFound(f"no call with call_id {call_id[:100]!r}")
    return serialize.json_response(serialize.call_detail(row, current_state().task_link))


@api.get("/tasks")
def tasks() -> Response:
    args = params.TASK_LIST.parse(request.args)
    page = queries.list_tasks(**args)
    return _page_response(page, serialize.task_summary)


@api.get("/tasks/<any_text:task_id>")  # task ids are the app's own: "/" included
def task(task_id: str) -> Response:
    params.NO_PARAMS.parse(request.args)
    row = queries.get_task(task_id) if _plausible_id(task_id) else None
    if row is None:
        raise NotFound(f"no task with task_id {task_id[:100]!r}")
    return serialize.json_response(serialize.task_detail(row))


@api.get("/llm/events")
def events() -> Response:
    args = params.EVENTS.parse(request.args)
    messages, last_event_id = current_state().feed.poll(args["after"], args["timeout"])
    body = b'{"events":[' + b",".join(messages) + b'],"last_event_id":%d}' % last_event_id
    return Response(body, mimetype="application/json")


@api.get("/llm/openapi.json")
def openapi() -> Response:
    params.NO_PARAMS.parse(request.args)
    from admin_flask.openapi import document

    return serialize.json_response(document(current_app, current_state()))


@api.route("/", defaults={"path": ""}, methods=_METHODS, strict_slashes=False)
@api.route("/<any_text:path>", methods=_METHODS)
def unknown(path: str) -> Response:
    """Every other URL under the prefix: a JSON 405 when another method would match, else 404."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = set()
    for method in _METHODS:
        try:
            rule, _ = adapter.match(method=method, return_rule=True)
        except (NotFound, MethodNotAllowed, RequestRedirect):
            continue
        if rule.endpoint != request.endpoint:
            allowed.add(method)
    if not allowed and _is_websocket_route(adapter):
        raise errors.BadParameter("Upgrade", "this URL is a websocket: open it with a websocket client")
    if allowed:
        allowed |= {"HEAD", "OPTIONS"} if "GET" in allowed else {"OPTIONS"}
        raise MethodNotAllowed(
            sorted(allowed), f"{request.method} is not allowed here; use {', '.join(sorted(allowed))}"
        )
    raise NotFound(f"no API route {request.path[:200]!r}; see {current_state().api_prefix}/llm/openapi.json")


def _is_websocket_route(adapter: Any) -> bool:
    """True when the URL is a websocket route that a plain HTTP request reached."""
    ws = current_app.url_map.bind(
        adapter.server_name, adapter.script_name, url_scheme="ws", path_info=adapter.path_info
    )
    try:
        rule, _ = ws.match(return_rule=True)
    except HTTPException:
        return False
    return bool(rule.websocket)


def _jsonl(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """The export's lines, ``EXPORT_CHUNK_BYTES`` at a time (the server writes each piece it is given)."""
    lines: list[bytes] = []
    size = 0
    try:
        for row in rows:
            line = serialize.encode(serialize.export_line(row)) + b"\n"
            lines.append(line)
            size += len(line)
            if size >= EXPORT_CHUNK_BYTES:
                yield b"".join(lines)
                lines, size = [], 0
    except StoreError as exc:  # the status is sent already: the body ends with the error
        lines.append(serialize.encode({"error": errors.current_store_unavailable(exc).error()}) + b"\n")
    if lines:
        yield b"".join(lines)


def _plausible_id(value: str) -> bool:
    """Ids are short printable text: anything else is unknown without asking the store."""
    return 0 < len(value) <= params.MAX_TEXT and not any(ord(char) < 32 or char == "\x7f" for char in value)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
