"""Documents as SQLite rows: the tables' version and indexes, revisions, the SQL of a selector.

Layout: one table per collection (``jobs``, ``executions``) holding ``id``, ``rev`` and the
document as JSON text, with expression indexes (``json_extract``) over the fields of
:data:`~libdcron.abc.INDEXED_FIELDS`; and one ``changes`` table written in the same transaction as
every document write.  ``changes`` keeps one row per document: a write replaces the document's row,
which takes a new, larger ``seq`` (``AUTOINCREMENT`` never reuses one), and a deletion removes it,
so the table never grows beyond the number of documents and a reader asking "after seq N" sees
every document written since N, and not deleted since, exactly once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from libdcron.abc import EXECUTIONS, JOBS, Scalar
from libdcron.document_base import check_field, check_selector_value, clean_body, dump_json
from libdcron.errors import ValidationError

SCHEMA_VERSION = 1

#: Expression indexes, by collection: each tuple is the fields of one index, in order.  They cover
#: the selections the leader, the worker and the CLI make (jobs by name or enabled; executions of
#: a job newest first, by status, all of them newest first).
INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    JOBS: (),  # by name: the primary key (a job's id is its name); states compared by dcron
    EXECUTIONS: (
        ("job", "fire_time", "attempt"),
        ("status", "fire_time", "attempt"),
        ("fire_time", "attempt"),
    ),
}


def _body_json(body: Mapping[str, Any]) -> str:
    """The document as compact JSON with sorted keys, without ``_id``/``_rev``."""
    return dump_json(clean_body(body), sort_keys=True)




def _expr(field: str) -> str:
    """The SQL expression of a top-level field; identical text in indexes and queries."""
    if check_field(field) == "_id":
        return "id"
    return f"json_extract(body, '$.{field}')"


def _type_expr(field: str) -> str:
    return f"json_type(body, '$.{field}')"


def _condition(field: str, value: Scalar) -> tuple[str, list[Any]]:
    """SQL for ``field == value`` with JSON's types: true is not 1, 1 is not "1", null is not missing."""
    expr = _expr(field)
    if field == "_id":
        if not isinstance(value, str):
            raise ValidationError("a selector on _id takes a string")
        return "id = ?", [value]
    check_selector_value(field, value)
    if value is None:
        return f"{expr} IS NULL AND {_type_expr(field)} = 'null'", []
    if isinstance(value, bool):
        return f"{expr} = ? AND {_type_expr(field)} = ?", [int(value), "true" if value else "false"]
    if isinstance(value, int | float):
        return f"{expr} = ? AND {_type_expr(field)} IN ('integer', 'real')", [value]
    return f"{expr} = ?", [value]  # json_extract gives TEXT for JSON strings only


def _greater(field: str, value: str | int | float) -> tuple[str, list[Any]]:
    """SQL for ``field > value`` among values of the same JSON type (``after`` in ``find``): the
    bare ``>`` on the indexed expression is what lets SQLite walk the index from the cursor."""
    expr = _expr(field)
    if field == "_id":
        return "id > ?", [value]
    if isinstance(value, str):
        return f"{expr} > ? AND {_type_expr(field)} = 'text'", [value]
    return f"{expr} > ? AND {_type_expr(field)} IN ('integer', 'real')", [value]


def _record_change(conn: sqlite3.Connection, collection: str, doc_id: str) -> None:
    # REPLACE deletes the document's previous row: a new, larger seq and still one row per document.
    conn.execute("INSERT OR REPLACE INTO changes (collection, doc_id) VALUES (?, ?)", (collection, doc_id))


def _record_changes(conn: sqlite3.Connection, collection: str, doc_ids: list[str]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO changes (collection, doc_id) VALUES (?, ?)", [(collection, d) for d in doc_ids]
    )


def _document(doc_id: str, rev: str, text: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": doc_id, "_rev": rev}
    doc.update(json.loads(text))
    return doc
