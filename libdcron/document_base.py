"""What every document store checks in what its callers pass, before it touches its database.

The checks follow :class:`~libdcron.abc.DocumentStore`'s contract and CouchDB's rules, so the
embedded store refuses what a CouchDB server would: an unknown collection, an empty id or one
starting with ``_``, a body that is not a JSON object or holds ``_`` fields other than
``_id``/``_rev``, a selector value that is not a JSON scalar, a field that is not top-level, sort
fields in mixed directions, a negative ``limit`` or ``skip``, an ``after`` range that is not on the
first sort field or not a string or number.  Each raises
:class:`~libdcron.errors.ValidationError`; each returns what it checked, so a call reads as the
value it guards.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .abc import COLLECTIONS
from .errors import ConflictError, ValidationError

__all__ = [
    "check_after",
    "check_changes_limit",
    "check_collection",
    "check_doc_id",
    "check_field",
    "check_find_args",
    "check_new_docs",
    "check_selector_value",
    "clean_body",
    "dump_json",
]

_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def check_collection(name: str) -> str:
    """``name`` when it is one of :data:`~libdcron.abc.COLLECTIONS`."""
    if name not in COLLECTIONS:
        raise ValidationError(f"unknown collection {name!r}; the collections are {', '.join(COLLECTIONS)}")
    return name


def check_doc_id(doc_id: str) -> str:
    """``doc_id`` when it is a non-empty string not starting with ``_``."""
    if not isinstance(doc_id, str) or not doc_id:
        raise ValidationError("a document id must be a non-empty string")
    if doc_id.startswith("_"):
        raise ValidationError(f"document id {doc_id!r} must not start with '_' (reserved, as in CouchDB)")
    return doc_id


def clean_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The document without ``_id``/``_rev``; other ``_`` fields are refused (CouchDB would)."""
    if not isinstance(body, Mapping):
        raise ValidationError(f"a document must be a JSON object, got {type(body).__name__}")
    clean: dict[str, Any] = {}
    for key, value in body.items():
        if not isinstance(key, str):
            raise ValidationError(f"document field names must be strings, got {key!r}")
        if key in ("_id", "_rev"):
            continue
        if key.startswith("_"):
            raise ValidationError(f"document field {key!r} must not start with '_' (reserved, as in CouchDB)")
        clean[key] = value
    return clean


def dump_json(data: Any, sort_keys: bool = False) -> str:
    """``data`` as compact JSON text; :class:`ValidationError` when JSON cannot represent it."""
    try:
        return json.dumps(
            data, separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=sort_keys
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"document is not representable as JSON: {exc}") from None


def check_field(field: str) -> str:
    """``field`` when it names ``_id`` or a top-level field (letters, digits and ``_``)."""
    if field != "_id" and (not isinstance(field, str) or not _FIELD_RE.match(field)):
        raise ValidationError(
            f"field name {field!r} is not supported: use a top-level field made of letters, digits and '_'"
        )
    return field


def check_selector_value(field: str, value: Any) -> Any:
    """``value`` when it is a JSON scalar: a string, a number, a boolean or ``None``."""
    if value is not None and not isinstance(value, str | int | float | bool):
        raise ValidationError(
            f"selector value for {field!r} must be a string, integer, boolean or null, got {value!r}"
        )
    return value


def check_find_args(sort: Sequence[tuple[str, bool]], limit: int | None, skip: int) -> bool:
    """Check ``find``'s ``sort``, ``limit`` and ``skip``; whether the sort is descending."""
    if limit is not None and limit < 0:
        raise ValidationError(f"limit must not be negative, got {limit}")
    if skip < 0:
        raise ValidationError(f"skip must not be negative, got {skip}")
    directions = {bool(descending) for _, descending in sort}
    if len(directions) > 1:
        raise ValidationError("every sort field must have the same direction")
    return directions == {True}


def check_changes_limit(limit: int) -> int:
    """``changes``' ``limit`` when it is at least 1."""
    if limit < 1:
        raise ValidationError(f"limit must be at least 1, got {limit}")
    return limit


def check_after(
    after: tuple[str, str | int | float] | None, sort: Sequence[tuple[str, bool]]
) -> tuple[str, str | int | float] | None:
    """``find``'s ``after=(field, value)`` when ``field`` is the first sort field and ``value`` a
    string or a finite number (a string for ``_id``); ``None`` when there is no range."""
    if after is None:
        return None
    if not isinstance(after, tuple | list) or len(after) != 2:
        raise ValidationError(f"after must be a (field, value) pair, got {after!r}")
    field, value = after
    check_field(field)
    if not sort or sort[0][0] != field:
        raise ValidationError(f"after's field {field!r} must be the first field of the sort")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(f"after's value for {field!r} must be a string or a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"after's value for {field!r} must be a finite number, got {value!r}")
    if field == "_id" and not isinstance(value, str):
        raise ValidationError("after on _id takes a string")
    return field, value


def check_new_docs(docs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """``create_many``'s documents as ``(doc_id, clean body)`` pairs, each checked as ``create``
    checks one (the first invalid one raises :class:`ValidationError`)."""
    if isinstance(docs, str | bytes | Mapping):
        raise ValidationError("create_many takes a sequence of (doc_id, body) pairs")
    checked: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(docs):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValidationError(f"document {index}: expected a (doc_id, body) pair, got {item!r}")
        doc_id, body = item
        checked.append((check_doc_id(doc_id), clean_body(body)))
    return checked


def next_rev(previous: str | None, body_json: str) -> str:
    """A CouchDB-like revision ``N-<md5>``: generation number, hash of previous revision and body."""
    generation = 1
    if previous:
        head, _, _ = previous.partition("-")
        generation = int(head) + 1 if head.isdigit() else 1
    digest = hashlib.md5(f"{previous or ''}\n{body_json}".encode(), usedforsecurity=False).hexdigest()
    return f"{generation}-{digest}"


def stale_revision(collection: str, doc_id: str, rev: str, current: str | None = None) -> ConflictError:
    """The error of an update whose revision ``rev`` is not the document's ``current`` one."""
    now = f" (now {current!r})" if current is not None else ""
    return ConflictError(
        f"{collection} document {doc_id!r} changed: revision {rev!r} is stale{now}; "
        "read it again and reapply the change"
    )
