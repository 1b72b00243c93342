"""The admin's JSON writer: orjson, and the stdlib for what orjson refuses, through each of its
three doors (text, bytes, a Flask response)."""

from __future__ import annotations

import decimal
import json

import pytest
from flask import Flask

from admin_flask import serialize

REFUSED_BY_ORJSON = [
    {"tokens": 2**70},  # beyond 64 bits
    json.loads("[" * 300 + "]" * 300),  # deeper than 254 levels
]


@pytest.mark.parametrize(
    "value", [{"text": "季度销售报告", "sum": decimal.Decimal("12"), "nan": float("nan")}, *REFUSED_BY_ORJSON]
)
def test_text_bytes_and_response_hold_the_same_compact_json(value: object) -> None:
    text = serialize.dumps(value)
    with Flask(__name__).app_context():
        response = serialize.json_response(value, 201)
    assert serialize.encode(value) == text.encode() == response.get_data()
    assert response.status_code == 201 and response.mimetype == "application/json"
    assert ", " not in text and "\\u" not in text  # compact, UTF-8 kept as is


def test_values_orjson_refuses_come_out_as_the_stdlib_writes_them() -> None:
    assert serialize.dumps({"tokens": 2**70}) == '{"tokens":1180591620717411303424}'
    assert json.loads(serialize.dumps(REFUSED_BY_ORJSON[1])) == REFUSED_BY_ORJSON[1]


def test_store_values_json_cannot_write_are_made_plain() -> None:
    written = serialize.dumps(
        {"sum": decimal.Decimal("12"), "mean": decimal.Decimal("1.5"), "nan": float("nan")}
    )
    assert json.loads(written) == {"sum": 12, "mean": 1.5, "nan": None}
