"""The embedded document store: one SQLite file, shared by every dcron process of one host.

The store: :mod:`.store`; its URL forms: :mod:`.url`; its tables, indexes and revisions:
:mod:`.schema`; its connection, concurrency and error handling: :mod:`.connection`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from libdcron.abc import DocumentStore
from libdcron.errors import ValidationError
from libdcron.hookspecs import hookimpl

from .schema import INDEXES, SCHEMA_VERSION
from .store import SQLiteDocumentStore
from .url import DEFAULT_TIMEOUT, MEMORY, SCHEME, parse_url

__all__ = [
    "DEFAULT_TIMEOUT",
    "INDEXES",
    "MEMORY",
    "SCHEMA_VERSION",
    "SCHEME",
    "SQLiteDocumentStore",
    "dcron_document_store",
    "parse_url",
]


@hookimpl
def dcron_document_store(url: str, options: Mapping[str, Any]) -> DocumentStore | None:
    """A :class:`SQLiteDocumentStore` for ``sqlite://`` URLs; ``None`` for any other URL."""
    if not url.startswith("sqlite:"):
        return None
    if not url.startswith(SCHEME):
        raise ValidationError(f"{url!r}: write sqlite:///absolute/path.db or sqlite://relative/path.db")
    return SQLiteDocumentStore.from_url(url, options)
