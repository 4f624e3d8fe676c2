"""HTTP plumbing of the CouchDB document store: one request, its errors turned into dcron's.

Error handling: connection refused, timeouts, 5xx answers, rejected credentials -> every one
becomes :class:`~libdcron.errors.UnavailableError` naming the URL (password masked).  Reads that
fail to connect are tried once more at once (a keep-alive connection the server just closed);
writes are never retried here, since the first try may have been applied.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import requests
from pycouchdb import exceptions as couch_errors
from pycouchdb.client import Server
from pycouchdb.resource import Resource

from libdcron.document_base import dump_json
from libdcron.errors import ConflictError, DcronError, NotFoundError, UnavailableError, ValidationError

log = logging.getLogger(__package__)  # one logger for the whole plugin, named after the package


class _MissingDatabase(UnavailableError):
    """A database of the store is not there (deleted after ``open``, or not created yet)."""


def _index_name(fields: Sequence[str]) -> str:
    name = "dcron-" + "-".join(f.lstrip("_") for f in fields)
    if len(name) > 100:
        name = "dcron-" + hashlib.sha1("/".join(fields).encode(), usedforsecurity=False).hexdigest()
    return name


class _CouchDBClient:
    """Requests to the store's CouchDB server; the store's ``__init__`` sets these attributes."""

    url: str
    prefix: str
    timeout: float
    _where: str  # the URL, password masked
    _server: Server
    _dbs: dict[str, Resource]
    _indexes: set[tuple[str, tuple[str, ...]]]
    _lock: threading.Lock
    _opened: bool
    _closed: bool

    def db_name(self, collection: str) -> str:
        return f"{self.prefix}_{collection}"

    # -- HTTP plumbing ------------------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn pycouchdb and requests exceptions into dcron's."""
        if self._closed:
            raise DcronError(f"CouchDB document store {self._where} is closed")
        try:
            yield
        except couch_errors.Conflict as exc:
            raise ConflictError(f"{what}: conflict ({exc})") from None
        except couch_errors.NotFound as exc:
            reason = str(exc)
            if "database" in reason.lower() or "no_db_file" in reason:
                self._forget_open()
                raise _MissingDatabase(
                    f"CouchDB document store {self._where}: {what}: the database is missing ({reason}); "
                    "it was deleted after the store opened; the next call creates it again"
                ) from None
            raise NotFoundError(f"{what}: does not exist ({reason})") from None
        except couch_errors.BadRequest as exc:
            raise ValidationError(
                f"CouchDB document store {self._where}: {what}: bad request ({exc})"
            ) from None
        except couch_errors.GenericError as exc:
            detail = exc.args[0] if exc.args else exc
            if isinstance(detail, dict) and detail.get("error") in ("unauthorized", "forbidden"):
                raise UnavailableError(
                    f"CouchDB document store {self._where}: {what}: access refused ({detail.get('reason')}); "
                    "check the credentials in the URL"
                ) from None
            raise UnavailableError(
                f"CouchDB document store {self._where}: {what}: server error {detail}"
            ) from None
        except couch_errors.Error as exc:
            raise UnavailableError(f"CouchDB document store {self._where}: {what}: {exc!r}") from None
        except requests.Timeout as exc:
            raise UnavailableError(
                f"CouchDB document store {self._where}: {what}: no answer within {self.timeout:g} s ({exc})"
            ) from None
        except requests.RequestException as exc:
            raise UnavailableError(
                f"CouchDB document store {self._where}: {what}: cannot reach the server ({exc})"
            ) from None
        except (ValueError, KeyError) as exc:  # not JSON, or no content-type: not a CouchDB answer
            raise UnavailableError(
                f"CouchDB document store {self._where}: {what}: unexpected answer ({exc!r})"
            ) from None

    def _call(
        self,
        what: str,
        resource: Resource,
        method: str,
        path: str | None = None,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        retry: bool = False,
        raw: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """One request; its JSON answer.  With ``retry`` (reads only) a request that failed to
        connect (not one that timed out) is tried once more at once.  With ``raw`` the answer is
        not checked by pycouchdb, which raises on the first per-document error of a bulk answer
        (``_bulk_docs`` reports a conflict per document, with HTTP 201); ``timeout`` (raw only)
        replaces the store's."""
        data = None if body is None else dump_json(body).encode()
        with self._errors(what):
            for attempt in (1, 2):
                try:
                    if raw:
                        url = resource.base_url.rstrip("/") + "/" + (path or "")
                        response = resource.session.request(
                            method, url, params=dict(params or {}), data=data, timeout=timeout or resource.timeout
                        )
                        result = response.json() if response.content else None
                    else:
                        response, result = resource.request(method, path, params=dict(params or {}), data=data)
                    break
                except requests.ConnectionError as exc:
                    if not retry or attempt == 2 or isinstance(exc, requests.Timeout):
                        raise
                    log.debug("CouchDB %s: %s failed (%s); trying once more", self._where, what, exc)
        # pycouchdb checks JSON answers only; an error page in HTML or text passes through it.
        if response.status_code >= 400:
            error = UnavailableError
            if response.status_code == 404:
                self._forget_open()
                error = _MissingDatabase
            raise error(
                f"CouchDB document store {self._where}: {what}: HTTP {response.status_code} "
                f"{response.reason} ({response.text[:200]!r})"
            )
        if not isinstance(result, dict | list):
            content_type = response.headers.get("content-type")
            raise UnavailableError(
                f"CouchDB document store {self._where}: {what}: unexpected answer, not CouchDB's JSON "
                f"(HTTP {response.status_code}, {content_type}: {response.text[:100]!r})"
            )
        return result

    def _database_exists(self, name: str) -> bool:
        what = f"look up database {name}"
        try:
            self._call(what, self._server.resource, "GET", name, retry=True)
        except (NotFoundError, _MissingDatabase):
            return False
        return True

    def _forget_open(self) -> None:
        """Make the next call run ``open`` again (a database vanished: CouchDB was reset)."""
        with self._lock:
            self._opened = False
            self._indexes.clear()

    def _ensure_index(self, collection: str, fields: tuple[str, ...]) -> str:
        key = (collection, fields)
        name = _index_name(fields)
        if key in self._indexes:
            return name
        spec = {"index": {"fields": list(fields)}, "ddoc": name, "name": name, "type": "json"}
        what = f"create index {name} in {self.db_name(collection)}"
        self._call(what, self._dbs[collection], "POST", "_index", body=spec, retry=True)
        with self._lock:
            self._indexes.add(key)
        return name
