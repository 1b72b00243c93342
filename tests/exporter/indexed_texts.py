"""What the search tests compare the store's answers with: the indexed calls' text, read as the
full-text indexes read it, and a list of texts written as calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import peewee

from tests.exporter.conftest import Rows


def indexed_texts(database: peewee.Database) -> dict[str, tuple[str, str, str]]:
    """call_id -> (status, prompt, response) of the indexed calls, as the indexes read them."""
    sql = (
        "SELECT c.call_id, c.status, coalesce(t.prompt, ''), coalesce(t.response, '') "
        "FROM llm_calls AS c JOIN llm_calls_text AS t ON t.id = c.rowid "
        "JOIN llm_calls_fts_docsize AS d ON d.id = c.rowid"
    )
    return {call_id: (status, p, r) for call_id, status, p, r in database.execute_sql(sql)}


def write_texts(rows: Rows, texts: Sequence[tuple[str, str]], **columns: Any) -> list[str]:
    """One call per (prompt, response), ended by turns succeeded, failed or cancelled, from the
    sources ``app`` and ``billing`` by turns (``columns`` override); their call ids."""
    statuses = ["succeeded", "failed", "cancelled"]
    return rows.each(
        [
            {"prompt": p, "response": r, "status": statuses[i % 3], "source": ["app", "billing"][i % 2]}
            | columns
            for i, (p, r) in enumerate(texts)
        ]
    )
