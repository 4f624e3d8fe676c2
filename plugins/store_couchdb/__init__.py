"""The document store on Apache CouchDB 3 (or anything speaking its API), through pycouchdb.

The store, its indexes and its change positions: :mod:`.store`; its URL forms and options:
:mod:`.url`; its HTTP requests and error handling: :mod:`.client`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from libdcron.abc import DocumentStore
from libdcron.hookspecs import hookimpl

from .store import INDEXES, PAGE, CouchDBDocumentStore
from .url import DEFAULT_PREFIX, DEFAULT_TIMEOUT, parse_url

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "INDEXES",
    "PAGE",
    "CouchDBDocumentStore",
    "dcron_document_store",
    "parse_url",
]



@hookimpl
def dcron_document_store(url: str, options: Mapping[str, Any]) -> DocumentStore | None:
    """A :class:`CouchDBDocumentStore` for ``http://`` and ``https://`` URLs; else ``None``."""
    if not url.startswith(("http://", "https://")):
        return None
    return CouchDBDocumentStore.from_url(url, options)
