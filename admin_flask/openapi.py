"""The OpenAPI 3.1 document of the admin API, served at ``{api}/llm/openapi.json``.

The parameters come from the same ``params`` declarations that parse the requests, and the response
schemas from the same field lists that ``serialize`` writes, so the document describes what the
routes do (tests/admin_flask check every route of the app is in it and every documented parameter
is accepted). The websocket is listed as a ``GET`` answered ``101`` (OpenAPI has no websockets);
its messages are the ``LiveCallMessage``, ``LiveStatusMessage`` and ``LiveResetMessage`` schemas.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from flask import Flask, request

from admin_flask import params, serialize
from admin_flask.state import AdminState

_INT = {"type": ["integer", "null"]}
_STR = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_JSON = {}  # any JSON value (decoded bodies, attributes)
_PERCENTILES = {
    "type": "object",
    "properties": {"p50": _INT, "p95": _INT},
    "required": ["p50", "p95"],
}
_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}


def _obj(properties: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(properties)
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict[str, Any]:
    return _obj(
        {
            "items": {"type": "array", "items": _ref(item)},
            "total": {"type": "integer", "minimum": 0},
            "page": {"type": "integer", "minimum": 1},
            "page_size": {"type": "integer", "minimum": 1},
        }
    )


def _fields(names: tuple[str, ...], overrides: dict[str, Any]) -> dict[str, Any]:
    """A schema per field: timestamps for ``*_at``, integers for ``*_ms`` and counts, else text."""
    schemas = {}
    for name in names:
        if name in overrides:
            schemas[name] = overrides[name]
        elif name.endswith("_at"):
            schemas[name] = _TIME
        elif name.endswith(("_ms", "_tokens", "_count")):
            schemas[name] = _INT
        else:
            schemas[name] = _STR
    return schemas


_SUMMARY = _fields(
    serialize.CALL_SUMMARY_FIELDS,
    {
        "call_id": {"type": "string"},
        "status": {"type": "string", "enum": list(params.CALL_STATUSES)},
        "stream": {"type": "boolean"},
        "retry_count": {"type": "integer", "minimum": 0},
        "finish_reasons": {"type": ["array", "null"], "items": {"type": "string"}},
    },
)
_EVENT = _obj(
    {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "at": _TIME,
        "data": _JSON,
    }
)
_TASK = _fields(
    serialize.TASK_FIELDS,
    {
        "task_id": {"type": "string"},
        "name": {"type": "string"},
        "status": {"type": "string", "enum": list(params.TASK_STATUSES)},
        "calls": {"type": "integer", "minimum": 0},
        "failed_calls": {"type": "integer", "minimum": 0},
    },
)
_FACET_VALUES = {
    "type": "array",
    "items": _obj({"value": _STR, "count": {"type": "integer", "minimum": 0}}),
}
_STATUS_COUNTS = _obj({name: {"type": "integer", "minimum": 0} for name in params.CALL_STATUSES})
_SCHEDULER = _obj(
    {
        "process": {"type": "string"},
        "scheduler": {"type": "string"},
        "live": {"type": "boolean"},
        "heartbeat_at": _TIME,
        "heartbeat_age_ms": {"type": "integer", "minimum": 0},
        "queue_depth": _INT,
        "in_flight": _INT,
        "max_concurrency": _INT,
        "min_interval_ms": _INT,
        "max_queue": _INT,
        "dispatched": _INT,
        "last_dispatch_at": _TIME,
        "oldest_wait_ms": _INT,
        "waiting": {
            "type": "array",
            "items": _obj({"call_id": _STR, "source": _STR, "since": _TIME}),
        },
        "store_dropped": _INT,
        "store_last_error": _STR,
    }
)
_STATUS = _obj(
    {
        "now": _TIME,
        "window": {"type": "string", "enum": list(params.WINDOWS_MS)},
        "schedulers": {"type": "array", "items": _SCHEDULER},
        "aggregates": _obj(
            {
                "since": _TIME,
                "until": _TIME,
                "total": {"type": "integer", "minimum": 0},
                "ended": {"type": "integer", "minimum": 0},
                "counts": _STATUS_COUNTS,
                "error_rate": _RATE,
                "wait_ms": _PERCENTILES,
                "first_token_ms": _PERCENTILES,
                "duration_ms": _PERCENTILES,
                "tokens": _obj(
                    {name: {"type": "integer"} for name in ("input", "output", "cached", "reasoning")}
                ),
                "retries": {"type": "integer", "minimum": 0},
                "series": {
                    "type": "array",
                    "items": _obj(
                        {
                            "start": _TIME,
                            "calls": {"type": "integer"},
                            "failed": {"type": "integer"},
                            "p95_duration_ms": _INT,
                        }
                    ),
                },
            }
        ),
        "store": _obj(
            {
                "engine": {"type": "string", "enum": ["sqlite", "postgresql"]},
                "calls": {"type": "integer", "minimum": 0},
                "oldest_call_at": _TIME,
                "retention_days": {"type": ["number", "null"]},
                "writers": {
                    "type": "array",
                    "items": _obj(
                        {
                            "process": {"type": "string"},
                            "dropped": {"type": "integer"},
                            "last_error": _STR,
                            "live": {"type": "boolean"},
                        }
                    ),
                },
                "losses": _obj(
                    {
                        "dropped_records": {"type": "integer", "minimum": 0},
                        "dropped_calls": {"type": "integer", "minimum": 0},
                        "episodes": {"type": "integer", "minimum": 0},
                        "files_replaced": {"type": "integer", "minimum": 0},
                        "items": {
                            "type": "array",
                            "items": _obj(
                                {
                                    "process": {"type": "string"},
                                    "kind": {"type": "string", "enum": ["dropped", "file_replaced"]},
                                    "started_at": _TIME,
                                    "ended_at": _TIME,
                                    "records": {"type": "integer", "minimum": 0},
                                    "calls": {"type": "integer", "minimum": 0},
                                    "reason": _STR,
                                }
                            ),
                        },
                    }
                ),
            }
        ),
    }
)
_ERROR = _obj(
    {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "parameter": {"type": "string"},
                "reason": {"type": "string", "enum": ["damaged", "missing", "unavailable"]},
            },
            "required": ["code", "message"],
        }
    }
)
SCHEMAS: dict[str, Any] = {
    "Error": _ERROR,
    "CallSummary": _obj(_SUMMARY),
    "CallPage": _page("CallSummary"),
    "CallEvent": _EVENT,
    "CallDetail": _obj(
        {
            **_SUMMARY,
            **{name: _JSON for name in serialize.CALL_BODY_FIELDS},
            "events": {"type": "array", "items": _ref("CallEvent")},
            "task": {
                "oneOf": [
                    {"type": "null"},
                    _obj(
                        {
                            "task_id": {"type": "string"},
                            "name": _STR,
                            "status": _STR,
                            "started_at": _TIME,
                            "ended_at": _TIME,
                            "duration_ms": _INT,
                            "url": {"type": "string"},
                        }
                    ),
                ]
            },
        }
    ),
    "ExportLine": _obj({**_SUMMARY, **{name: _JSON for name in serialize.CALL_BODY_FIELDS}}),
    "Facets": _obj(
        {
            "total": {"type": "integer", "minimum": 0},
            "statuses": _STATUS_COUNTS,
            "sources": _FACET_VALUES,
            "requested_by": _FACET_VALUES,
            "models": _FACET_VALUES,
            "error_types": _FACET_VALUES,
            "failures_by_model": _FACET_VALUES,
            "wait_ms": _PERCENTILES,
            "first_token_ms": _PERCENTILES,
            "duration_ms": _PERCENTILES,
            "error_rate": _RATE,
        }
    ),
    "Status": _STATUS,
    "Task": _obj(_TASK),
    "TaskPage": _page("Task"),
    "TaskDetail": _obj(
        {
            **_TASK,
            "trace_id": _STR,
            "span_id": _STR,
            "attributes": _JSON,
            "calls": {"type": "array", "items": _ref("CallSummary")},
            "calls_truncated": {"type": "boolean"},
        }
    ),
    "LiveCallMessage": _obj(
        {
            "type": {"const": "llm.call"},
            "event_id": {"type": "integer"},
            "kind": {"type": "string"},
            "at": _TIME,
            "call_id": {"type": "string"},
            "call": {"oneOf": [{"type": "null"}, _ref("CallSummary")]},
            "events": {"type": "array", "items": _ref("CallEvent")},
        }
    ),
    "LiveStatusMessage": {
        "allOf": [
            _obj({"type": {"const": "llm.status"}, "last_event_id": {"type": "integer"}}),
            {"oneOf": [_ref("Status"), _obj({"error": _ERROR["properties"]["error"]})]},
        ]
    },
    "LiveResetMessage": _obj(
        {
            "type": {"const": "llm.reset"},
            "reason": {"type": "string", "enum": ["behind", "store_reset"]},
            "last_event_id": {"type": "integer"},
        }
    ),
    "EventsPage": _obj(
        {"events": {"type": "array", "items": _ref("LiveCallMessage")}, "last_event_id": {"type": "integer"}}
    ),
}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "a parameter is invalid (error.parameter names it)",
        401: "anonymous",
        403: "signed in, not an admin",
        404: "no such call, task or route",
        429: "token login: too many wrong tokens from this address (Retry-After: seconds to wait)",
        503: "the store cannot be read right now (error.reason: damaged, missing or unavailable)",
    }
    content = {"application/json": {"schema": _ref("Error")}}
    return {str(status): {"description": reasons[status], "content": content} for status in statuses}


def _operation(
    operation_id: str,
    summary: str,
    route: params.Route,
    ok: dict[str, Any],
    *extra_errors: int,
    path_param: str = "",
) -> dict[str, Any]:
    parameters = [param.openapi() for param in route.params]
    if path_param:
        parameters.insert(
            0, {"name": path_param, "in": "path", "required": True, "schema": {"type": "string"}}
        )
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": parameters,
            "responses": {"200": ok, **_errors(400, 401, 403, 429, *extra_errors)},
        }
    }


def _json_ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


NO_PARAMS = params.NO_PARAMS
PATHS: dict[str, Any] = {
    "/llm/status": _operation(
        "getStatus",
        "schedulers, window aggregates and the store",
        params.STATUS,
        _json_ok("the status", "Status"),
        503,
    ),
    "/llm/calls": _operation(
        "listCalls",
        "one page of calls with the exact total",
        params.CALL_LIST,
        _json_ok("a page", "CallPage"),
        503,
    ),
    "/llm/facets": _operation(
        "getFacets",
        "values with counts, p50/p95 and error rate of the calls the filters select",
        params.FACETS,
        _json_ok("the facets", "Facets"),
        503,
    ),
    "/llm/calls/export": _operation(
        "exportCalls",
        "every matching call with its messages, one JSON object a line",
        params.EXPORT,
        {
            "description": "JSON lines (Content-Disposition: attachment)",
            "content": {"application/x-ndjson": {"schema": _ref("ExportLine")}},
        },
        503,
    ),
    "/llm/calls/{call_id}": _operation(
        "getCall",
        "everything about one call",
        NO_PARAMS,
        _json_ok("the call", "CallDetail"),
        404,
        503,
        path_param="call_id",
    ),
    "/tasks": _operation(
        "listTasks",
        "one page of tasks with the exact total",
        params.TASK_LIST,
        _json_ok("a page", "TaskPage"),
        503,
    ),
    "/tasks/{task_id}": _operation(
        "getTask",
        "one task and its calls",
        NO_PARAMS,
        _json_ok("the task", "TaskDetail"),
        404,
        503,
        path_param="task_id",
    ),
    "/llm/events": _operation(
        "pollEvents",
        "long poll of the live feed: at once when events after `after` exist, else within `timeout`",
        params.EVENTS,
        _json_ok("the events", "EventsPage"),
        503,
    ),
    "/llm/ws": _operation(
        "liveFeed",
        "websocket of the live feed (LiveCallMessage, LiveStatusMessage, LiveResetMessage frames)",
        params.LIVE,
        {"description": "unused: the handshake answers 101 Switching Protocols"},
        503,
    ),
    "/llm/openapi.json": _operation(
        "getOpenAPI",
        "this document",
        NO_PARAMS,
        {
            "description": "the OpenAPI 3.1 document",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    ),
}
PATHS["/llm/ws"]["get"]["responses"]["101"] = {"description": "switched to the websocket protocol"}
PATHS["/llm/ws"]["get"]["x-websocket"] = True


def document(app: Flask, state: AdminState) -> dict[str, Any]:
    """The document for this app (its prefix and session cookie)."""
    security = [{"adminToken": []}, {"session": []}] if state.standalone else [{"session": []}]
    try:
        version = metadata.version("llm-otel")
    except metadata.PackageNotFoundError:
        version = "0"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "llm-otel admin API",
            "version": version,
            "description": "The admin API of llm-otel: see docs/contracts/http-apis.md.",
        },
        "servers": [{"url": request.script_root + state.api_prefix}],
        "security": security,
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "the admin token"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": app.config.get("SESSION_COOKIE_NAME", "session"),
                    "description": "the session of the login page (standalone) or of the host app",
                },
            },
        },
    }
