"""The served OpenAPI document matches the routes, and a property test over it (schemathesis) finds no
500 and no error that is not JSON-shaped (the slowest answer is printed, not asserted). The
per-parameter fuzzing from the declarations themselves is in test_fuzz_params.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.admin_flask.conftest import API, TOKEN, Admin, Store

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contracts" / "http-apis.md"
EXAMPLES_PER_OPERATION = 20  # x 10 operations x 2 modes: 300-400 requests, ~10-20 s


@pytest.fixture
def document(admin: Admin) -> dict[str, Any]:
    return admin.json("/llm/openapi.json")


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.removeprefix(API))


def test_every_route_is_in_the_document_and_the_contract(admin: Admin, document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": API}]
    routes = {
        openapi_path(rule.rule): rule
        for rule in admin.app.url_map.iter_rules()
        if rule.endpoint.startswith("llm_otel_admin_api.") and rule.endpoint != "llm_otel_admin_api.unknown"
    }
    assert set(routes) == set(document["paths"])
    contract = CONTRACT.read_text()
    for path, rule in routes.items():
        assert set(document["paths"][path]) == {"get"} and "GET" in rule.methods
        verb = "WS" if rule.websocket else "GET"
        spelled = re.sub(r"\{(\w+)\}", r"<\1>", path)
        assert f"`{verb} {{api}}{spelled}" in contract, f"{verb} {path} is not in {CONTRACT.name}"


def valid_value(schema: dict[str, Any]) -> str:
    """A value the parameter's schema allows (the first choice, the minimum, a date)."""
    if "enum" in schema:
        return schema["enum"][-1]
    if "anyOf" in schema:
        return "2026-01-01T00:00:00Z"
    if schema["type"] in ("integer", "number"):
        return str(schema.get("minimum", 0))
    if "pattern" in schema and "," in schema["pattern"]:  # a comma list of choices
        return schema["pattern"].split("(")[1].split("|")[0]
    return "some text"


def test_every_documented_parameter_is_accepted(admin: Admin, document: dict[str, Any], store: Store) -> None:
    path_values = {"call_id": store.manifest.calls["failed"], "task_id": "job-42"}
    checked = 0
    for path, item in document["paths"].items():
        if item["get"].get("x-websocket"):
            continue
        url = path.format(**path_values)
        for parameter in item["get"]["parameters"]:
            if parameter["in"] != "query":
                continue
            value = "0" if parameter["name"] == "timeout" else valid_value(parameter["schema"])
            no_wait = {"timeout": "0"} if path == "/llm/events" else {}  # the long poll answers at once
            response = admin.get(url, **{**no_wait, parameter["name"]: value})
            assert response.status_code == 200, (path, parameter["name"], value, response.text)
            if parameter["name"] != "timeout":  # an empty timeout is the default: a 25 s wait
                empty = admin.get(url, **{**no_wait, parameter["name"]: ""})
                assert empty.status_code == 200, (path, parameter["name"])  # empty: as if absent
            checked += 1
    assert checked >= 40


def validator(document: dict[str, Any], name: str) -> Any:
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema_rs.validator_for(root)


def test_real_bodies_match_their_schemas(admin: Admin, document: dict[str, Any], store: Store) -> None:
    detail = validator(document, "CallDetail")
    for call_id in store.manifest.calls.values():
        detail.validate(admin.json(f"/llm/calls/{call_id}"))
    validator(document, "CallPage").validate(admin.json("/llm/calls", page_size=200))
    validator(document, "TaskDetail").validate(admin.json("/tasks/batch-1"))
    validator(document, "TaskPage").validate(admin.json("/tasks"))
    validator(document, "Status").validate(admin.json("/llm/status"))
    validator(document, "Facets").validate(admin.json("/llm/facets"))
    validator(document, "EventsPage").validate(admin.json("/llm/events", after="0", timeout="0"))
    export = validator(document, "ExportLine")
    for line in admin.get("/llm/calls/export").text.splitlines()[:20]:
        export.validate(json.loads(line))
    with pytest.raises(jsonschema_rs.ValidationError):  # the schemas are not vacuous
        detail.validate({"call_id": 7})


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_property_no_500_and_every_error_is_json(
    admin: Admin, document: dict[str, Any], mode: GenerationMode
) -> None:
    """schemathesis generates requests from the served document (valid ones, then invalid ones) and
    checks the answers: never a 5xx, status codes, content types and bodies as documented, invalid
    input refused. ``from`` after ``to`` is valid per parameter but refused (400): the one check
    that cannot know it (valid data accepted) is left out."""
    schema = schemathesis.openapi.from_dict(document)
    base_url = admin.url + API
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answered: dict[int, int] = {}
    slowest = [0.0]
    for result in schema.get_all_operations():
        operation = result.ok()
        parameters = document["paths"][operation.path]["get"]["parameters"]
        queried = any(parameter["in"] == "query" for parameter in parameters)
        if mode is GenerationMode.NEGATIVE and not queried:
            continue  # nothing to make invalid (any text is a valid id; the auth header is fixed)

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,  # the same cases on every run: a red CI names a defect, not bad luck
            suppress_health_check=list(HealthCheck),
        )
        @given(operation.as_strategy(generation_mode=mode, headers=headers))
        def check(case: schemathesis.Case) -> None:
            excluded = [schemathesis.checks.positive_data_acceptance]
            if case.path == "/llm/events":  # a long poll would wait up to its timeout
                case.query = dict(case.query or {}, timeout="0")
                # that may have replaced the one invalid value of a negative case: no longer invalid
                excluded.append(schemathesis.checks.negative_data_rejection)
            response = case.call(base_url=base_url, timeout=30)
            slowest[0] = max(slowest[0], response.elapsed)
            answered[response.status_code] = answered.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.path, case.query, response.text[:500])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert (
                    isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
                )
            case.validate_response(response, excluded_checks=excluded)

        check()
    print(f"\nschemathesis {mode.value}: {answered}, slowest {slowest[0]:.3f} s")
    if mode is GenerationMode.POSITIVE:  # the generator reached the data and the unknown ids
        assert answered.get(200, 0) > 50 and answered.get(404, 0) > 0, answered
    else:
        assert answered.get(400, 0) > 50, answered
