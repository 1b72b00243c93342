"""Text search and hostile filter values, on SQLite (FTS5 trigram) and PostgreSQL (ILIKE)."""

from __future__ import annotations

from typing import Any

import pytest

from exporter import queries
from tests.exporter.conftest import Rows


@pytest.fixture
def texts(any_rows: Rows) -> dict[str, str]:
    ids = {
        "report": any_rows.call(prompt="请帮我写一份季度销售报告，包括图表", response="好的，这是报告。"),
        "budget": any_rows.call(prompt="下个季度的预算是多少？", response="预算是一百万。"),
        "sales": any_rows.call(prompt="销售额增长了吗？", response="增长了百分之十二。"),
        "quokka": any_rows.call(
            prompt="Tell me about the quokka of Rottnest Island",
            response="A small marsupial.",
            status="failed",
        ),
        "percent": any_rows.call(prompt="Growth was 100% this year, his best", response="Great"),
        "quote": any_rows.call(prompt="It's O'Brien's turn; path C:\\temp", response="ok"),
    }
    any_rows.calls(5, prompt="Summarise the meeting notes", response="Notes summarised.")
    return ids


def _found(**filters: Any) -> set[str]:
    result = queries.list_calls(page_size=200, **filters)
    assert result["total"] == len(result["items"])
    return {item["call_id"] for item in result["items"]}


def test_a_chinese_phrase_finds_exactly_its_call(texts: dict[str, str]) -> None:
    assert _found(q="季度销售报告") == {texts["report"]}
    assert _found(q="  季度销售报告 ") == {texts["report"]}  # surrounding spaces are not searched


def test_a_two_character_chinese_query_finds_its_calls_not_every_call(texts: dict[str, str]) -> None:
    assert _found(q="季度") == {texts["report"], texts["budget"]}
    assert _found(q="销售") == {texts["report"], texts["sales"]}
    assert _found(q="预算", status=["failed"]) == set()


def test_a_rare_english_word_finds_exactly_its_call(texts: dict[str, str]) -> None:
    assert _found(q="quokka") == _found(q="QUOKKA") == {texts["quokka"]}
    assert _found(q="quokka", status=["failed"], sort="duration") == {texts["quokka"]}
    assert queries.call_facets(q="quokka")["total"] == 1
    assert [call["call_id"] for call in queries.iter_calls(q="quokka")] == [texts["quokka"]]


@pytest.mark.parametrize(
    ("q", "key"),
    [
        ("100%", "percent"),
        ("%", "percent"),
        ("O'Brien", "quote"),
        ("C:\\temp", "quote"),
        ("'s turn;", "quote"),
    ],
)
def test_sql_and_like_metacharacters_in_q_are_plain_text(texts: dict[str, str], q: str, key: str) -> None:
    assert _found(q=q) == {texts[key]}


@pytest.mark.parametrize(
    "q", ["x_y", "h_s", "%%", "[a-z]*", "' OR '1'='1", '" OR 1=1 --', "*", "NEAR(a b)", "a:b"]
)
def test_queries_made_of_metacharacters_match_only_their_text(texts: dict[str, str], q: str) -> None:
    assert _found(q=q) == set()


@pytest.mark.parametrize(
    "value", ["'; DROP TABLE llm_calls; --", "%", "_", "app%", "a_p", "\\", "' OR '1'='1", '"', "app' --"]
)
@pytest.mark.parametrize("name", ["source", "requested_by", "model", "parent_task_id", "error_type"])
def test_sql_and_like_metacharacters_in_filters_are_plain_data(any_rows: Rows, name: str, value: str) -> None:
    hostile = any_rows.call(**{name: value})
    any_rows.calls(3, **{name: "app"})

    assert _found(**{name: value}) == {hostile}
    assert queries.call_facets(**{name: value})["total"] == 1
    assert [call["call_id"] for call in queries.iter_calls(**{name: value})] == [hostile]
    assert queries.store_summary()["calls"] == 4  # the table is still there, whole


def test_the_words_of_a_query_found_apart_are_not_a_match(any_rows: Rows) -> None:
    """Every trigram of "question" is in the first text, never the word: the index keeps no
    positions on SQLite, so its candidates are checked against the text."""
    apart = any_rows.call(prompt="the quest ended at the station", response="ok")
    together = any_rows.call(prompt="a question for the station", response="ok")

    assert _found(q="question") == {together}
    assert _found(q="station") == {apart, together}
    assert queries.list_calls(q="question")["total"] == 1


def test_letters_of_any_alphabet_are_found_in_either_case(any_rows: Rows) -> None:
    cyrillic = any_rows.call(prompt="ПРИВЕТ, МИР", response="Здравствуйте")
    accented = any_rows.call(prompt="Crème brûlée au CAFÉ", response="Très bien")

    assert _found(q="привет") == {cyrillic}
    assert _found(q="здравств") == {cyrillic}
    assert _found(q="café") == _found(q="CAFÉ") == {accented}
