"""Query parameters → the typed arguments of ``exporter.queries``, or a 400 naming the parameter.

Each route declares its parameters once, as a tuple of ``Param`` (``CALL_LIST``, ``TASK_LIST``, ...);
the same declaration parses the request (``parse``) and writes the route's parameters into the
OpenAPI document (``Param.openapi``), so the two cannot drift apart.

Rules shared by every parameter: an empty value is the same as no value (forms send ``source=``;
the document says ``allowEmptyValue``); values are taken exactly as sent (no trimming); a
single-valued parameter given twice, an unknown parameter, a control character in text, a number
out of range, all get a 400 naming the parameter and what it accepts. Every bound is finite, so no
value reaches the database that it cannot hold.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from admin_flask.errors import BadParameter

CALL_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TASK_STATUSES = ("running", "succeeded", "failed")
WINDOWS_MS = {"1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000}
MAX_TEXT = 500
MAX_PAGE = 1_000_000
MAX_PAGE_SIZE = 200
MAX_SAFE_INTEGER = 2**53 - 1  # JavaScript's: the page reads these numbers
MAX_EVENT_ID = 2**63 - 1
MAX_LONG_POLL_S = 30.0
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?"
)
"""The ISO 8601 forms ``Time`` takes (RFC 3339's, a date alone, no zone). Python's
``fromisoformat`` also reads compact forms, so it took 23 digits (too many for epoch ms) for a time."""
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_NUMBER = re.compile(r"-?[0-9]{1,10}(\.[0-9]{1,10})?([eE][-+]?[0-9]{1,3})?")
_LEAP_SECOND = re.compile(r"(T\d\d:\d\d):60")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TEXT_PATTERN = "^[^\\x00-\\x08\\x0b-\\x1f\\x7f]*$"
"""``_CONTROL``'s complement, as the OpenAPI document states it (ECMA-262)."""


@dataclass(frozen=True)
class Param:
    """One query parameter: its name, where its value goes (``target``) and what it accepts."""

    name: str
    description: str
    target: str = ""
    default: Any = None

    @property
    def key(self) -> str:
        return self.target or self.name

    def convert(self, text: str) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def openapi(self) -> dict[str, Any]:
        schema = self.schema()
        if self.default is not None:
            schema["default"] = self.default
        return {
            "name": self.name,
            "in": "query",
            "required": False,
            "allowEmptyValue": True,
            "description": self.description,
            "schema": schema,
        }

    def fail(self, message: str) -> BadParameter:
        return BadParameter(self.name, f"{self.name}: {message}")


@dataclass(frozen=True)
class Text(Param):
    max_length: int = MAX_TEXT

    def convert(self, text: str) -> str:
        if len(text) > self.max_length:
            raise self.fail(f"at most {self.max_length} characters, got {len(text)}")
        if _CONTROL.search(text):
            raise self.fail("must not contain control characters")
        return text

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": self.max_length, "pattern": _TEXT_PATTERN}


@dataclass(frozen=True)
class Integer(Param):
    minimum: int = 0
    maximum: int = MAX_SAFE_INTEGER

    def convert(self, text: str) -> int:
        if not _INTEGER.fullmatch(text):
            raise self.fail(
                f"must be a whole number from {self.minimum} to {self.maximum}, got {text[:40]!r}"
            )
        value = int(text)
        if not self.minimum <= value <= self.maximum:
            raise self.fail(f"must be from {self.minimum} to {self.maximum}, got {value}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class Seconds(Param):
    maximum: float = MAX_LONG_POLL_S

    def convert(self, text: str) -> float:
        if not _NUMBER.fullmatch(text) or not 0 <= float(text) <= self.maximum:
            raise self.fail(f"must be a number of seconds from 0 to {self.maximum:g}, got {text[:40]!r}")
        return abs(float(text))

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": 0, "maximum": self.maximum}


@dataclass(frozen=True)
class Choice(Param):
    choices: tuple[str, ...] = ()

    def convert(self, text: str) -> str:
        if text not in self.choices:
            raise self.fail(f"must be one of {', '.join(self.choices)}, got {text[:40]!r}")
        return text

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class ChoiceList(Param):
    """A comma list (``failed,cancelled``); the parameter may also be repeated."""

    choices: tuple[str, ...] = ()

    def convert(self, text: str) -> list[str]:
        values = text.split(",")
        unknown = [value for value in values if value not in self.choices]
        if unknown:
            raise self.fail(
                f"unknown value {unknown[0][:40]!r}; a comma list of any of {', '.join(self.choices)}"
            )
        return values

    def schema(self) -> dict[str, Any]:
        one = "|".join(self.choices)
        return {"type": "string", "pattern": f"^({one})(,({one}))*$"}


@dataclass(frozen=True)
class Time(Param):
    """ISO 8601 (``2026-12-01T10:00:00Z``, ``...+08:00``, ``2026-12-01``; no zone: UTC) or epoch ms."""

    def convert(self, text: str) -> int:
        if text.isascii() and text.isdigit():
            if len(text) > len(str(_MAX_EPOCH_MS)) or int(text) > _MAX_EPOCH_MS:  # int() of a bounded text
                raise self.fail(f"epoch milliseconds must be at most {_MAX_EPOCH_MS}, got {text[:40]!r}")
            return int(text)
        iso = text[:-1] + "+00:00" if text[-1:] in "Zz" else text
        leap = _LEAP_SECOND.search(iso) is not None  # 23:59:60 (RFC 3339): the next second
        try:
            if not _ISO_TIME.fullmatch(text):
                raise ValueError(text)
            moment = dt.datetime.fromisoformat(_LEAP_SECOND.sub(r"\1:59", iso))
        except ValueError:
            raise self.fail(
                "must be an ISO 8601 time (2026-12-01T10:00:00Z, 2026-12-01T10:00:00+08:00, 2026-12-01) "
                f"or epoch milliseconds, got {text[:40]!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return (moment - _EPOCH) // dt.timedelta(milliseconds=1) + (1000 if leap else 0)

    def schema(self) -> dict[str, Any]:
        return {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
                {"type": "integer", "minimum": 0, "maximum": _MAX_EPOCH_MS},
            ]
        }


@dataclass(frozen=True)
class Route:
    """The parameters of one route."""

    params: tuple[Param, ...]
    by_name: Mapping[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {param.name: param for param in self.params})

    def parse(self, args: MultiDict[str, str]) -> dict[str, Any]:
        """The typed values by target name; absent parameters take their default (or None)."""
        unknown = [name for name in args if name not in self.by_name]
        if unknown:
            allowed = ", ".join(self.by_name) or "no parameters"
            raise BadParameter(
                unknown[0][:40], f"unknown parameter {unknown[0][:40]!r}; this route takes {allowed}"
            )
        values: dict[str, Any] = {}
        for param in self.params:
            given = [value for value in args.getlist(param.name) if value != ""]
            if not given:
                values[param.key] = param.default
            elif isinstance(param, ChoiceList):
                merged = [item for value in given for item in param.convert(value)]
                values[param.key] = sorted(set(merged)) or None
            elif len(given) > 1:
                raise param.fail("given more than once")
            else:
                values[param.key] = param.convert(given[0])
        since, until = values.get("since_ms"), values.get("until_ms")
        if since is not None and until is not None and since > until:
            raise BadParameter("from", "from must not be after to")
        return values


CALL_FILTERS = (
    ChoiceList("status", "calls in any of these statuses (comma list)", choices=CALL_STATUSES),
    Text("source", "exact source label (llm_otel.labels(source=...))"),
    Text("requested_by", "exact requested_by label"),
    Text("model", "exact requested model"),
    Text("parent_task_id", "calls made inside this task"),
    Text("error_type", "exact error type of failed calls, e.g. RateLimitError"),
    Time("from", "calls enqueued at or after this time (ISO 8601 or epoch ms)", target="since_ms"),
    Time("to", "calls enqueued before this time (ISO 8601 or epoch ms)", target="until_ms"),
    Integer("min_duration_ms", "calls that took at least this long (ms)"),
    Integer("min_wait_ms", "calls that waited in the scheduler at least this long (ms)"),
    Integer("min_first_token_ms", "calls whose first token took at least this long after dispatch (ms)"),
    Text("q", "full text of prompt and response, any language (1-500 characters)"),
)
PAGING = (
    Integer("page", "page number, from 1", minimum=1, maximum=MAX_PAGE, default=1),
    Integer("page_size", "items per page", minimum=1, maximum=MAX_PAGE_SIZE, default=50),
)
_SORT = Choice(
    "sort",
    "newest first, or slowest first by duration / first token / wait (ties newest first)",
    choices=("newest", "duration", "first_token", "wait"),
    default="newest",
)
CALL_LIST = Route((*CALL_FILTERS, _SORT, *PAGING))
FACETS = Route(
    (
        Choice(
            "window", "only calls enqueued in this window", choices=("1h", "24h", "7d", "all"), default="all"
        ),
        *CALL_FILTERS,
    )
)
EXPORT = Route(
    (*CALL_FILTERS, _SORT, Choice("format", "the file format", choices=("jsonl",), default="jsonl"))
)
STATUS = Route((Choice("window", "the aggregates' window", choices=tuple(WINDOWS_MS), default="1h"),))
TASK_LIST = Route(
    (
        ChoiceList("status", "tasks in any of these statuses (comma list)", choices=TASK_STATUSES),
        Text("name", "exact task name"),
        Time("from", "tasks started at or after this time (ISO 8601 or epoch ms)", target="since_ms"),
        Time("to", "tasks started before this time (ISO 8601 or epoch ms)", target="until_ms"),
        Text("q", "substring of the task's name or id"),
        *PAGING,
    )
)
_AFTER = Integer(
    "after",
    "the event_id of the last message seen: only later events are sent; omitted: only events from now on",
    maximum=MAX_EVENT_ID,
)
EVENTS = Route(
    (
        _AFTER,
        Seconds("timeout", "seconds to wait for an event when there is none yet (0-30)", default=25.0),
    )
)
LIVE = Route((_AFTER,))
NO_PARAMS = Route(())
"""The routes that take no query parameter (a call, a task, the OpenAPI document): any is a 400."""
