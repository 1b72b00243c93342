"""Hypothesis over every query parameter that ``admin_flask/params.py`` declares: no 500, every error
JSON-shaped and naming the parameter at fault, every valid query answered (the slowest answer is
printed; the list's speed is measured in bench/bench_admin.py).

The requests are generated from the declarations themselves: each served path is matched to its
``params.Route``, and each ``Param`` gets values by its type (valid ones from its bounds and choices,
invalid ones just past them, any text, empty, given twice, and unknown names beside). A parameter
added to a route is fuzzed without touching this file; a new kind of parameter fails
``test_every_declared_parameter_has_a_strategy`` until it gets one here.

Whether a value is valid is known from how it was generated, never from the code under test.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin_flask import openapi, params
from tests.admin_flask.conftest import API, TOKEN, Admin, Store

EXAMPLES_PER_ROUTE = 40  # x 7 routes with parameters, 10 each for the 3 without: 310 requests, ~25 s
LONG_POLL_S = 0.2
"""A valid ``timeout`` is drawn up to this (not up to 30 s): the wait itself is not what is fuzzed."""
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_CONTROL = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F)]
_PRINTABLE = st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S", "Zs"))
_ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


# -- which route serves which declaration ------------------------------------------------------------


def _declared_routes() -> list[params.Route]:
    return [value for value in vars(params).values() if isinstance(value, params.Route)]


def _served() -> dict[str, params.Route]:
    """Every path of the OpenAPI document → the ``params.Route`` its query parameters come from."""
    candidates = [*_declared_routes(), openapi.NO_PARAMS]
    served = {}
    for path, item in openapi.PATHS.items():
        query = [one for one in item["get"]["parameters"] if one["in"] == "query"]
        served[path] = next(route for route in candidates if [p.openapi() for p in route.params] == query)
    return served


SERVED = _served()


def test_every_declared_route_is_served_and_fuzzed() -> None:
    served = [id(route) for route in SERVED.values()]
    unserved = [route for route in _declared_routes() if id(route) not in served]
    assert unserved == [], "a params.Route that no path of the OpenAPI document uses"


# -- values, by the type of the parameter --------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    text: str
    ms: int | None = None  # a Time's value in epoch ms (``from`` after ``to`` is refused)


def _ms(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)


@st.composite
def _iso_time(draw: st.DrawFn) -> Value:
    naive = draw(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
    naive = naive.replace(microsecond=naive.microsecond // 1000 * 1000)
    form = draw(st.sampled_from(["Z", "offset", "no zone", "date", "epoch"]))
    if form == "date":
        return Value(
            naive.date().isoformat(), _ms(dt.datetime.combine(naive.date(), dt.time(), dt.timezone.utc))
        )
    if form == "offset":
        minutes = draw(st.integers(-14 * 60, 14 * 60))
        moment = naive.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes)))
        return Value(moment.isoformat(timespec="milliseconds"), _ms(moment))
    moment = naive.replace(tzinfo=dt.timezone.utc)
    if form == "epoch":
        ms = draw(st.integers(0, _ms(dt.datetime(9999, 12, 31, 23, 59, 59, 999000, dt.timezone.utc))))
        return Value(str(ms), ms)
    text = naive.isoformat(timespec="milliseconds") + ("Z" if form == "Z" else "")
    return Value(text, _ms(moment))


def _valid(param: params.Param) -> st.SearchStrategy[Value]:
    if isinstance(param, params.Text):
        return st.text(_PRINTABLE, min_size=1, max_size=param.max_length).map(Value)
    if isinstance(param, params.Integer):
        return st.integers(param.minimum, param.maximum).map(lambda n: Value(str(n)))
    if isinstance(param, params.Seconds):
        return st.floats(0, min(param.maximum, LONG_POLL_S)).map(lambda s: Value(f"{s:.3f}"))
    if isinstance(param, params.Choice):
        return st.sampled_from(param.choices).map(Value)
    if isinstance(param, params.ChoiceList):
        return st.lists(st.sampled_from(param.choices), min_size=1, max_size=4).map(
            lambda v: Value(",".join(v))
        )
    if isinstance(param, params.Time):
        return _iso_time()
    raise TypeError(f"no strategy for {type(param).__name__}")


def _invalid(param: params.Param) -> st.SearchStrategy[str]:
    """Values the parameter must refuse."""
    not_a_number = st.sampled_from(
        ["", " 1", "1 ", "1.5", "1e3", "0x10", "١٢", "+-1", "NaN", "1_000", "9" * 20]
    )
    if isinstance(param, params.Text):
        too_long = st.text(_PRINTABLE, min_size=param.max_length + 1, max_size=param.max_length + 40)
        controlled = st.tuples(st.text(_PRINTABLE, max_size=20), st.sampled_from(_CONTROL)).map("".join)
        return st.one_of(too_long, controlled)
    if isinstance(param, params.Integer):
        outside = st.one_of(
            st.integers(max_value=param.minimum - 1), st.integers(min_value=param.maximum + 1)
        )
        return st.one_of(outside.map(str), not_a_number.filter(bool))
    if isinstance(param, params.Seconds):
        outside = st.one_of(st.floats(max_value=-0.001), st.floats(min_value=param.maximum + 0.001))
        return st.one_of(outside.map(repr), st.sampled_from(["inf", "nan", "1s", "ten"]))
    if isinstance(param, (params.Choice, params.ChoiceList)):
        wrong = st.one_of(
            _ANY_TEXT.filter(lambda text: text and text not in param.choices),
            st.sampled_from(param.choices).map(str.upper).filter(lambda text: text not in param.choices),
        )
        if isinstance(param, params.ChoiceList):  # one wrong item in a list, or an empty one
            wrong = st.one_of(
                wrong.filter(lambda text: any(item not in param.choices for item in text.split(","))),
                st.sampled_from(param.choices).map(lambda choice: choice + ","),
            )
        return wrong
    if isinstance(param, params.Time):
        return st.sampled_from(
            [
                "2026-13-01",
                "2026-02-30",
                "yesterday",
                "12/01/2026",
                "-5",
                "9" * 20,
                "2026-12-01T25:00",
                "1e12",
            ]
        )
    raise TypeError(f"no strategy for {type(param).__name__}")


def test_every_declared_parameter_has_a_strategy() -> None:
    for route in _declared_routes():
        for param in route.params:
            _valid(param), _invalid(param)  # raises TypeError for a kind of parameter not covered


# -- one request ---------------------------------------------------------------------------------------


@dataclass
class Query:
    """A generated query and what must come of it."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # must be a 400 naming one of these
    unsure: set[str] = field(default_factory=set)  # any text: a 200 or a 400 naming one of these
    times: dict[str, int] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return self.refused | self.unsure


@st.composite
def queries(draw: st.DrawFn, route: params.Route) -> Query:
    query = Query()
    # About half the queries are valid throughout; the others have one to three parameters wrong.
    names = [param.name for param in route.params]
    wrong = draw(st.sets(st.sampled_from(names), max_size=3)) if names and draw(st.booleans()) else set()
    for param in route.params:
        if param.name in wrong:
            how = draw(st.sampled_from(["invalid", "invalid", "any", "twice"]))
        else:
            how = draw(st.sampled_from(["absent", "absent", "valid", "valid", "empty"]))
        if isinstance(param, params.Seconds) and how in ("absent", "empty", "any"):
            # absent or empty is the default wait (25 s), any text may be a long one: the wait is
            # not what is fuzzed
            how = "valid"
        if how == "valid" or how == "twice":
            value = draw(_valid(param))
            query.pairs.append((param.name, value.text))
            if value.ms is not None:
                query.times[param.key] = value.ms
            if how == "twice":
                query.pairs.append((param.name, draw(_valid(param)).text))
                if not isinstance(param, params.ChoiceList):  # a comma list may also be repeated
                    query.refused.add(param.name)
        elif how == "invalid":
            query.pairs.append((param.name, draw(_invalid(param))))
            query.refused.add(param.name)
        elif how == "any":
            text = draw(_ANY_TEXT)
            query.pairs.append((param.name, text))
            if text:
                query.unsure.add(param.name)
        elif how == "empty":
            query.pairs.append((param.name, ""))
    if draw(st.integers(0, 9)) < (1 if route.params else 5):
        unknown = draw(
            st.text(_PRINTABLE, min_size=1, max_size=50).filter(lambda name: name not in route.by_name)
        )
        query.pairs.append((unknown, draw(_ANY_TEXT)))
        query.refused.add(unknown[:40])
    since, until = query.times.get("since_ms"), query.times.get("until_ms")
    if since is not None and until is not None and since > until:
        query.refused.add("from")
    given = {name for name, value in query.pairs if value}
    if {"from", "to"} <= given and {"from", "to"} & query.unsure:  # any text may be a later time
        query.unsure.add("from")
    draw(st.randoms()).shuffle(query.pairs)
    return query


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    seconds: float


def _http(admin: Admin, path: str, pairs: list[tuple[str, str]]) -> Answer:
    started = time.monotonic()
    response = admin.client.get(API + path, params=pairs)
    return Answer(
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
        time.monotonic() - started,
    )


def _handshake(admin: Admin, path: str, pairs: list[tuple[str, str]]) -> Answer:
    """A websocket opening handshake by hand: its status (101 or the JSON refusal) and body."""
    address = urlsplit(admin.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    started = time.monotonic()
    try:
        connection.request("GET", API + path + "?" + urlencode(pairs), headers=headers)
        response = connection.getresponse()
        body = b"" if response.status == 101 else response.read()
        return Answer(
            response.status, response.headers.get("content-type", ""), body, time.monotonic() - started
        )
    finally:
        connection.close()


@dataclass
class Timings:
    slowest: float = 0.0
    slowest_request: str = ""
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def answered(send: Callable[[], Answer], timings: Timings, label: str) -> Answer:
    """``send()``'s answer, counted in ``timings`` (a request that hangs fails on its client's timeout)."""
    answer = send()
    timings.requests += 1
    if answer.seconds > timings.slowest:
        timings.slowest, timings.slowest_request = answer.seconds, label
    timings.statuses[answer.status] = timings.statuses.get(answer.status, 0) + 1
    return answer


def check_answer(path: str, query: Query, answer: Answer) -> None:
    assert answer.status < 500, (path, query.pairs, answer.body[:500])
    if answer.status == 400:
        assert answer.content_type.startswith("application/json"), answer.content_type
        error = json.loads(answer.body)["error"]
        assert error["code"] == "bad_parameter" and isinstance(error["message"], str) and error["message"]
        assert error["parameter"] in query.names, (path, query.pairs, error)
        return
    assert not query.refused, (path, query.pairs, answer.status, answer.body[:300])
    if path == "/llm/ws":
        assert answer.status == 101, (query.pairs, answer.status, answer.body[:300])
        return
    assert answer.status == 200 or (answer.status == 404 and "{" in path), (path, query.pairs, answer.status)
    if path == "/llm/calls/export" and answer.status == 200:
        assert answer.content_type.startswith("application/x-ndjson")
        for line in answer.body.decode().splitlines():
            assert "error" not in json.loads(line)
    else:
        assert answer.content_type.startswith("application/json")
        json.loads(answer.body)


@pytest.mark.parametrize("path", sorted(SERVED))
def test_any_query_is_answered_or_refused_with_json_naming_the_parameter(
    admin: Admin, store: Store, path: str
) -> None:
    route = SERVED[path]
    url = path.format(call_id=store.manifest.calls["failed"], task_id="batch-1")
    timings = Timings()

    @settings(
        max_examples=EXAMPLES_PER_ROUTE if route.params else EXAMPLES_PER_ROUTE // 4,
        deadline=None,
        database=None,
        derandomize=True,  # the same queries on every run: a red CI names a defect, not bad luck
        suppress_health_check=list(HealthCheck),
    )
    @given(queries(route))
    def check(query: Query) -> None:
        send = _handshake if path == "/llm/ws" else _http
        answer = answered(lambda: send(admin, url, query.pairs), timings, f"{path} {query.pairs}")
        check_answer(path, query, answer)

    check()
    print(f"\n{path}: {timings.requests} requests, {timings.statuses}, slowest {timings.slowest:.3f} s")
    if route.params:  # the generator reached both sides of the declarations
        assert (
            timings.statuses.get(400, 0) > 0
            and sum(count for status, count in timings.statuses.items() if status in (101, 200, 404)) > 0
        ), timings.statuses
