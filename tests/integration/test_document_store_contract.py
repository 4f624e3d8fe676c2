"""The :class:`~libdcron.abc.DocumentStore` contract, run against every implementation.

``sqlite`` and ``memory`` (:class:`libdcron.testing.InMemoryDocumentStore`, the fake that embedding
users' tests run on) run everywhere; ``couchdb`` needs a CouchDB-API server (``DCRON_TEST_COUCHDB``, started
by ``scripts/services.sh start``) and is marked ``couchdb``.  Every test works in its own database
(a fresh SQLite file, or a fresh CouchDB database prefix), so tests never see each other's data.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import multiprocessing
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import dcron_plugins.store_couchdb as couchdb_module
import dcron_plugins.store_sqlite as sqlite_module
import pytest
import requests
from dcron_plugins.store_couchdb import CouchDBDocumentStore
from dcron_plugins.store_sqlite import SQLiteDocumentStore

from libdcron import testing as testing_module
from libdcron.abc import EXECUTIONS, JOBS, Change, DocumentStore
from libdcron.errors import ConflictError, NotFoundError, UnavailableError, ValidationError
from tests.conftest import service

BACKENDS = ["sqlite", "memory", pytest.param("couchdb", marks=pytest.mark.couchdb)]
#: Backends that keep their data outside this process, to share between processes or be unreachable
#: (the in-memory store has neither: tests of that are parametrized over these only, not skipped).
REAL_BACKENDS = ["sqlite", pytest.param("couchdb", marks=pytest.mark.couchdb)]
#: Backends whose change feed reports each document written exactly once (CouchDB may replay).
EXACT_FEED = ("sqlite", "memory")

#: A factory of store objects on one test database: call it again for a second "node".
StoreFactory = Callable[[], DocumentStore]


def _store_for_url(url: str) -> DocumentStore:
    """The store for ``url`` as the plugin hooks make it (the way dcrond does)."""
    store = (
        sqlite_module.dcron_document_store(url, {})
        or testing_module.dcron_document_store(url, {})
        or couchdb_module.dcron_document_store(url, {})
    )
    assert store is not None, url
    return store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, private database of ``backend``."""
    if backend == "sqlite":
        yield f"sqlite://{tmp_path}/state/dcron.db"
        return
    if backend == "memory":
        yield f"memory://t{uuid.uuid4().hex[:12]}"  # stores of one name share one database
        return
    base = service("COUCHDB", "CouchDB-API server (pouchdb-server)").rstrip("/")
    prefix = "t" + uuid.uuid4().hex[:12]
    yield f"{base}/{prefix}"
    for collection in (JOBS, EXECUTIONS):
        with contextlib.suppress(requests.RequestException):
            requests.delete(f"{base}/{prefix}_{collection}", timeout=5)


@pytest.fixture
def new_store(store_url: str) -> Iterator[StoreFactory]:
    stores: list[DocumentStore] = []

    def make() -> DocumentStore:
        store = _store_for_url(store_url)
        store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(new_store: StoreFactory) -> DocumentStore:
    return new_store()


def execution(job: str, minute: int, attempt: int = 1, status: str = "running") -> tuple[str, dict[str, Any]]:
    fire_time = f"2026-11-26T21:{minute:02d}:00Z"
    body = {"type": "execution", "job": job, "fire_time": fire_time, "attempt": attempt, "status": status}
    return f"{job}@{fire_time}#{attempt}", body


def strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_id", "_rev")}


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------


def test_create_get_update(store: DocumentStore) -> None:
    doc_id, body = execution("backup", 34)
    rev = store.create(EXECUTIONS, doc_id, {**body, "_id": "ignored", "_rev": "9-ignored"})
    assert isinstance(rev, str) and rev

    doc = store.get(EXECUTIONS, doc_id)
    assert doc["_id"] == doc_id and doc["_rev"] == rev
    assert strip(doc) == body

    changed = {**body, "status": "succeeded", "exit_code": 0, "nested": {"a": [1, 2, None], "b": "é"}}
    rev2 = store.update(EXECUTIONS, doc_id, changed, rev)
    assert rev2 != rev
    doc = store.get(EXECUTIONS, doc_id)
    assert doc["_rev"] == rev2 and strip(doc) == changed

    rev3 = store.update(EXECUTIONS, doc_id, {**changed, "_rev": "stale-but-ignored"}, rev2)
    assert rev3 not in (rev, rev2)


def test_collections_are_separate(store: DocumentStore) -> None:
    store.create(JOBS, "same-id", {"name": "same-id", "enabled": True})
    store.create(EXECUTIONS, "same-id", {"job": "x"})
    assert store.get(JOBS, "same-id")["name"] == "same-id"
    assert store.get(EXECUTIONS, "same-id")["job"] == "x"


def test_duplicate_create_conflicts(store: DocumentStore) -> None:
    doc_id, body = execution("backup", 34)
    rev = store.create(EXECUTIONS, doc_id, body)
    with pytest.raises(ConflictError):
        store.create(EXECUTIONS, doc_id, {**body, "node": "other"})
    doc = store.get(EXECUTIONS, doc_id)
    assert doc["_rev"] == rev and "node" not in doc


def test_stale_or_missing_revision_conflicts(store: DocumentStore) -> None:
    doc_id, body = execution("backup", 34)
    rev1 = store.create(EXECUTIONS, doc_id, body)
    rev2 = store.update(EXECUTIONS, doc_id, {**body, "status": "failed"}, rev1)
    with pytest.raises(ConflictError):
        store.update(EXECUTIONS, doc_id, {**body, "status": "lost"}, rev1)
    with pytest.raises(ConflictError):
        store.update(EXECUTIONS, doc_id, {**body, "status": "lost"}, "")
    with pytest.raises(ConflictError):
        store.update(EXECUTIONS, doc_id, {**body, "status": "lost"}, "1-00000000000000000000000000000000")
    assert store.get(EXECUTIONS, doc_id)["_rev"] == rev2


def test_missing_documents(store: DocumentStore) -> None:
    with pytest.raises(NotFoundError):
        store.get(JOBS, "nope")
    with pytest.raises(NotFoundError):
        store.update(JOBS, "nope", {"name": "nope"}, "1-abc")
    store.create(JOBS, "present", {"name": "present"})
    with pytest.raises(NotFoundError):
        store.get(EXECUTIONS, "present")


@pytest.mark.parametrize("doc_id", ["nightly@2026-11-26T21:34:00Z#2", "a/b c?d=e&f%20g#h", "ünïcödé-ジョブ"])
def test_ids_with_url_characters(store: DocumentStore, doc_id: str) -> None:
    rev = store.create(EXECUTIONS, doc_id, {"job": "j"})
    assert store.get(EXECUTIONS, doc_id)["_id"] == doc_id
    store.update(EXECUTIONS, doc_id, {"job": "j", "status": "running"}, rev)
    assert [d["_id"] for d in store.find(EXECUTIONS, {"job": "j"})] == [doc_id]
    with pytest.raises(ConflictError):
        store.create(EXECUTIONS, doc_id, {"job": "j"})
    store.delete(EXECUTIONS, doc_id, store.get(EXECUTIONS, doc_id)["_rev"])
    with pytest.raises(NotFoundError):
        store.get(EXECUTIONS, doc_id)


def test_invalid_input(store: DocumentStore) -> None:
    with pytest.raises(ValidationError):
        store.create("nonsense", "x", {})
    with pytest.raises(ValidationError):
        store.create(JOBS, "_reserved", {})
    with pytest.raises(ValidationError):
        store.create(JOBS, "", {})
    with pytest.raises(ValidationError):
        store.create(JOBS, "x", {"_attachments": {}})
    with pytest.raises(ValidationError):
        store.create(JOBS, "x", {"when": object()})
    with pytest.raises(ValidationError):
        store.find(EXECUTIONS, {}, sort=[("fire_time", True), ("attempt", False)])
    with pytest.raises(ValidationError):
        store.changes("not a position we issued")
    with pytest.raises(NotFoundError):
        store.get(JOBS, "x")  # nothing was written


# ---------------------------------------------------------------------------------------------
# delete
# ---------------------------------------------------------------------------------------------


def test_delete_takes_the_current_revision(backend: str, store: DocumentStore) -> None:
    doc_id, body = execution("backup", 34, status="succeeded")
    rev1 = store.create(EXECUTIONS, doc_id, body)
    rev2 = store.update(EXECUTIONS, doc_id, {**body, "log": "file:///l"}, rev1)
    for stale in (rev1, "", "1-00000000000000000000000000000000", "not-a-revision"):
        with pytest.raises(ConflictError):
            store.delete(EXECUTIONS, doc_id, stale)
    assert store.get(EXECUTIONS, doc_id)["_rev"] == rev2  # a refused delete changes nothing

    other_id, other = execution("backup", 35, status="succeeded")
    store.create(EXECUTIONS, other_id, other)
    assert store.delete(EXECUTIONS, doc_id, rev2) is None
    with pytest.raises(NotFoundError):
        store.get(EXECUTIONS, doc_id)
    assert [d["_id"] for d in store.find(EXECUTIONS, {"job": "backup"})] == [other_id]
    assert [d["_id"] for d in store.find(EXECUTIONS, {}, sort=[("fire_time", True)])] == [other_id]
    for rev in (rev2, rev1, "1-abc"):
        with pytest.raises(NotFoundError):  # deleted already: not a conflict
            store.delete(EXECUTIONS, doc_id, rev)
        if backend != "couchdb":  # pouchdb-server lets a write with rev2 revive it (CouchDB: 409)
            with pytest.raises(NotFoundError):
                store.update(EXECUTIONS, doc_id, body, rev)


def test_delete_of_a_missing_document(store: DocumentStore) -> None:
    with pytest.raises(NotFoundError):
        store.delete(EXECUTIONS, "nope", "1-abc")
    store.create(JOBS, "present", {"name": "present"})
    with pytest.raises(NotFoundError):  # in the other collection
        store.delete(EXECUTIONS, "present", store.get(JOBS, "present")["_rev"])
    with pytest.raises(ValidationError):
        store.delete("nonsense", "x", "1-abc")


def test_a_deleted_id_can_be_created_again(store: DocumentStore) -> None:
    doc_id, body = execution("backup", 34)
    store.delete(EXECUTIONS, doc_id, store.create(EXECUTIONS, doc_id, body))
    rev = store.create(EXECUTIONS, doc_id, {**body, "node": "again"})
    doc = store.get(EXECUTIONS, doc_id)
    assert doc["_rev"] == rev and doc["node"] == "again"
    assert store.create_many(EXECUTIONS, [(doc_id, body)])[0].__class__ is ConflictError


def test_delete_and_the_change_feed(backend: str, new_store: StoreFactory) -> None:
    writer, reader = new_store(), new_store()
    _, start = reader.changes(None)
    kept_id, kept = execution("a", 1)
    writer.create(EXECUTIONS, kept_id, kept)
    gone_id, gone = execution("a", 2)
    writer.delete(EXECUTIONS, gone_id, writer.create(EXECUTIONS, gone_id, gone))
    changes, position = _drain(reader, start)
    assert Change(EXECUTIONS, kept_id) in changes
    for change in changes:  # a deletion may be reported: looking it up says it is gone
        if change.doc_id == gone_id:
            with pytest.raises(NotFoundError):
                reader.get(EXECUTIONS, gone_id)
    if backend in EXACT_FEED:
        assert changes == [Change(EXECUTIONS, kept_id)]
        writer.delete(EXECUTIONS, kept_id, writer.get(EXECUTIONS, kept_id)["_rev"])
        assert _drain(reader, position)[0] == []
        assert _drain(reader, "0")[0] == []  # the feed holds existing documents only
    else:
        writer.delete(EXECUTIONS, kept_id, writer.get(EXECUTIONS, kept_id)["_rev"])
        assert Change(EXECUTIONS, kept_id) in _drain(reader, position)[0]  # CouchDB: the tombstone


# ---------------------------------------------------------------------------------------------
# find
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def executions(store: DocumentStore) -> list[str]:
    """Executions of jobs a and b; returns a's ids newest first (by fire time, then attempt)."""
    created = []
    for minute, attempts in ((1, 1), (3, 2), (2, 3), (5, 1), (4, 1)):
        for attempt in range(1, attempts + 1):
            status = "succeeded" if attempt == attempts else "lost"
            doc_id, body = execution("a", minute, attempt, status)
            store.create(EXECUTIONS, doc_id, body)
            created.append((body["fire_time"], attempt, doc_id))
            other_id, other = execution("b", minute, attempt, status)
            store.create(EXECUTIONS, other_id, other)
    return [doc_id for _, _, doc_id in sorted(created, reverse=True)]


def test_find_sorted_descending(store: DocumentStore, executions: list[str]) -> None:
    docs = store.find(EXECUTIONS, {"job": "a"}, sort=[("fire_time", True), ("attempt", True)])
    assert [d["_id"] for d in docs] == executions
    assert all(d["job"] == "a" and d["_rev"] for d in docs)
    newest = store.find(EXECUTIONS, {"job": "a"}, sort=[("fire_time", True), ("attempt", True)], limit=1)
    assert [d["_id"] for d in newest] == executions[:1]


def test_find_sorted_ascending(store: DocumentStore, executions: list[str]) -> None:
    docs = store.find(EXECUTIONS, {"job": "a"}, sort=[("fire_time", False), ("attempt", False)])
    assert [d["_id"] for d in docs] == executions[::-1]


def test_find_paging_with_limit_and_skip(store: DocumentStore, executions: list[str]) -> None:
    sort = [("fire_time", True), ("attempt", True)]
    pages: list[str] = []
    for skip in range(0, len(executions) + 3, 3):
        page = store.find(EXECUTIONS, {"job": "a"}, sort=sort, limit=3, skip=skip)
        assert len(page) <= 3
        pages.extend(d["_id"] for d in page)
    assert pages == executions
    assert store.find(EXECUTIONS, {"job": "a"}, sort=sort, limit=0) == []
    assert store.find(EXECUTIONS, {"job": "a"}, sort=sort, skip=len(executions)) == []


def test_find_without_limit_returns_everything(
    store: DocumentStore, executions: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # CouchDB pages _find; make it page here (find reads PAGE from the store module)
    monkeypatch.setattr("dcron_plugins.store_couchdb.store.PAGE", 3)
    docs = store.find(EXECUTIONS, {"job": "b"}, sort=[("fire_time", True), ("attempt", True)])
    assert len(docs) == len(executions) and all(d["job"] == "b" for d in docs)
    assert len(store.find(EXECUTIONS, {})) == 2 * len(executions)


def test_find_with_several_fields(store: DocumentStore, executions: list[str]) -> None:
    lost = store.find(
        EXECUTIONS, {"job": "a", "status": "lost"}, sort=[("fire_time", True), ("attempt", True)]
    )
    assert [d["_id"] for d in lost] == [i for i in executions if store.get(EXECUTIONS, i)["status"] == "lost"]
    assert len(lost) == 3
    assert len(store.find(EXECUTIONS, {"status": "succeeded"})) == 10
    assert store.find(EXECUTIONS, {"job": "nobody"}) == []
    one = store.find(EXECUTIONS, {"job": "a", "fire_time": "2026-11-26T21:03:00Z", "attempt": 2})
    assert [d["_id"] for d in one] == ["a@2026-11-26T21:03:00Z#2"]


def test_find_sees_updates(store: DocumentStore, executions: list[str]) -> None:
    doc = store.get(EXECUTIONS, executions[0])
    store.update(EXECUTIONS, executions[0], {**strip(doc), "status": "running"}, doc["_rev"])
    running = store.find(EXECUTIONS, {"status": "running"})
    assert [d["_id"] for d in running] == [executions[0]]


def test_find_boolean_and_typed_values(store: DocumentStore) -> None:
    store.create(JOBS, "on", {"name": "on", "enabled": True})
    store.create(JOBS, "off", {"name": "off", "enabled": False})
    store.create(JOBS, "one", {"name": "one", "enabled": 1})
    store.create(JOBS, "zero", {"name": "zero", "enabled": 0})
    store.create(JOBS, "text", {"name": "text", "enabled": "true"})
    store.create(JOBS, "null", {"name": "null", "enabled": None})
    store.create(JOBS, "missing", {"name": "missing"})

    def names(selector: dict[str, Any]) -> list[str]:
        return [d["_id"] for d in store.find(JOBS, selector, sort=[("name", False)])]

    assert names({"enabled": True}) == ["on"]
    assert names({"enabled": False}) == ["off"]
    assert names({"enabled": 1}) == ["one"]
    assert names({"enabled": 0}) == ["zero"]
    assert names({"enabled": "true"}) == ["text"]
    assert names({"enabled": None}) == ["null"]
    assert names({"name": "on", "enabled": True}) == ["on"]
    assert names({"name": "on", "enabled": False}) == []


# ---------------------------------------------------------------------------------------------
# find with after: a range on the first sort field (paging with a cursor)
# ---------------------------------------------------------------------------------------------


def _jobs(store: DocumentStore, count: int) -> list[str]:
    """Jobs job-000... (every third one disabled), created in one bulk write; their names in order."""
    names = [f"job-{i:03d}" for i in range(count)]
    results = store.create_many(JOBS, [(n, {"name": n, "enabled": i % 3 != 0}) for i, n in enumerate(names)])
    assert all(isinstance(r, str) for r in results)
    return names


def _walk(store: DocumentStore, selector: dict[str, Any], limit: int) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        after = None if cursor is None else ("name", cursor)
        page = store.find(JOBS, selector, sort=[("name", False)], limit=limit, after=after)
        assert len(page) <= limit
        seen.extend(d["name"] for d in page)
        if len(page) < limit:
            return seen
        cursor = page[-1]["name"]


def test_find_after_walks_every_document_once(store: DocumentStore) -> None:
    names = _jobs(store, 23)
    for limit in (1, 5, 23, 100):
        assert _walk(store, {}, limit) == names
    enabled = [n for i, n in enumerate(names) if i % 3 != 0]
    assert _walk(store, {"enabled": True}, 4) == enabled
    assert _walk(store, {"enabled": False}, 4) == [n for n in names if n not in enabled]
    page = store.find(JOBS, {}, sort=[("name", False)], limit=3, after=("name", "job-010"))
    assert [d["name"] for d in page] == ["job-011", "job-012", "job-013"]
    assert all(d["_rev"] for d in page)
    # not a document's value: strictly greater still
    page = store.find(JOBS, {}, sort=[("name", False)], limit=2, after=("name", "job-0105"))
    assert [d["name"] for d in page] == ["job-011", "job-012"]
    assert store.find(JOBS, {}, sort=[("name", False)], after=("name", "job-022")) == []
    assert store.find(JOBS, {}, sort=[("name", False)], after=("name", "zzz")) == []


def test_find_by_id_pages_skip_none_and_hold_only_documents(store: DocumentStore) -> None:
    """Jobs are read in the order of their ids (a job's id is its name): CouchDB's primary index,
    whose design documents (they sort between ``Z`` and ``a``) are no documents of the store."""
    ids = ["0", "A1", "B2", "Z9", "a1", "b2", "z9"]
    store.create_many(JOBS, [(i, {"name": i, "enabled": i != "B2"}) for i in ids])
    store.find(JOBS, {"enabled": True}, sort=[("_id", False)])  # (CouchDB: makes an index)
    assert [d["_id"] for d in store.find(JOBS, {}, sort=[("_id", False)])] == ids
    walked: list[str] = []
    cursor: str | None = None
    while True:
        page = store.find(JOBS, {}, sort=[("_id", False)], limit=2, after=None if cursor is None else ("_id", cursor))
        walked += [d["_id"] for d in page]
        if len(page) < 2:
            break
        cursor = page[-1]["_id"]
    assert walked == ids
    assert [d["_id"] for d in store.find(JOBS, {}, sort=[("_id", False)], limit=2, skip=2, after=("_id", "0"))] == [
        "Z9",
        "a1",
    ]
    enabled = store.find(JOBS, {"enabled": True}, sort=[("_id", False)], limit=3, after=("_id", "A1"))
    assert [d["_id"] for d in enabled] == ["Z9", "a1", "b2"]


def test_find_after_keeps_the_same_type(store: DocumentStore) -> None:
    values = (("n1", 1), ("n2", 2), ("n3", 3.5), ("s", "2"), ("t", True), ("z", None), ("a", [3]), ("o", {"a": 3}))
    for doc_id, value in values:
        store.create(EXECUTIONS, doc_id, {"job": "x", "attempt": value})
    after = store.find(EXECUTIONS, {"job": "x"}, sort=[("attempt", False)], after=("attempt", 1))
    assert [d["_id"] for d in after] == ["n2", "n3"]
    texts = store.find(EXECUTIONS, {"job": "x"}, sort=[("attempt", False)], after=("attempt", "1"))
    assert [d["_id"] for d in texts] == ["s"]


def test_find_after_is_checked(store: DocumentStore) -> None:
    with pytest.raises(ValidationError):
        store.find(JOBS, {}, after=("name", "a"))  # no sort
    with pytest.raises(ValidationError):
        store.find(JOBS, {}, sort=[("enabled", False), ("name", False)], after=("name", "a"))
    for value in (None, True, {"a": 1}, float("inf")):
        with pytest.raises(ValidationError):
            store.find(JOBS, {}, sort=[("name", False)], after=("name", value))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.find(JOBS, {}, sort=[("name", False)], after=("name",))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# create_many
# ---------------------------------------------------------------------------------------------


def test_create_many(store: DocumentStore) -> None:
    store.create(JOBS, "taken", {"name": "taken", "v": 0})
    docs = [
        ("a", {"name": "a", "v": 1, "_rev": "9-ignored"}),
        ("taken", {"name": "taken", "v": 2}),
        ("b", {"name": "b", "v": 3, "nested": {"x": [1, None]}}),
        ("a", {"name": "a", "v": 4}),  # twice in one batch: the second conflicts
    ]
    results = store.create_many(JOBS, docs)
    assert len(results) == 4
    assert isinstance(results[0], str) and isinstance(results[2], str)
    assert isinstance(results[1], ConflictError) and isinstance(results[3], ConflictError)
    assert store.get(JOBS, "a")["_rev"] == results[0] and strip(store.get(JOBS, "a")) == {"name": "a", "v": 1}
    assert strip(store.get(JOBS, "b")) == {"name": "b", "v": 3, "nested": {"x": [1, None]}}
    assert strip(store.get(JOBS, "taken")) == {"name": "taken", "v": 0}
    rev = store.update(JOBS, "b", {"name": "b", "v": 5}, str(results[2]))
    assert rev != results[2]
    assert [d["_id"] for d in store.find(JOBS, {}, sort=[("name", False)])] == ["a", "b", "taken"]
    assert store.create_many(JOBS, []) == []


def test_create_many_in_bulk(store: DocumentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dcron_plugins.store_couchdb.store.PAGE", 300)  # several _bulk_docs requests
    docs = [(f"bulk-{i:04d}", {"name": f"bulk-{i:04d}", "enabled": True}) for i in range(1200)]
    first = store.create_many(JOBS, docs[:700])
    results = store.create_many(JOBS, docs)
    assert all(isinstance(r, str) for r in first)
    assert all(isinstance(r, ConflictError) for r in results[:700])
    assert all(isinstance(r, str) for r in results[700:])
    assert len(store.find(JOBS, {"enabled": True})) == 1200


def test_create_many_checks_everything_first(store: DocumentStore) -> None:
    for bad in ([("ok", {"name": "ok"}), ("_bad", {})], [("ok", {"name": "ok"}), ("x", {"_att": 1})],
                [("ok", {"name": "ok"}), ("x", {"when": object()})], [("ok",)]):  # fmt: skip
        with pytest.raises(ValidationError):
            store.create_many(JOBS, bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.create_many("nonsense", [("ok", {})])
    with pytest.raises(NotFoundError):
        store.get(JOBS, "ok")


def test_create_many_reports_changes(backend: str, store: DocumentStore) -> None:
    since = store.changes(None)[1]
    store.create_many(JOBS, [("c1", {"name": "c1"}), ("c2", {"name": "c2"})])
    changes, _ = _drain(store, since)
    assert {c.doc_id for c in changes if c.collection == JOBS} == {"c1", "c2"}


# ---------------------------------------------------------------------------------------------
# changes
# ---------------------------------------------------------------------------------------------


def _drain(store: DocumentStore, since: str, limit: int = 1000) -> tuple[list[Change], str]:
    """Every change after ``since``, read ``limit`` at a time."""
    found: list[Change] = []
    for _ in range(1000):
        batch, position = store.changes(since, limit=limit)
        found.extend(batch)
        if not batch:
            return found, position
        since = position
    raise AssertionError("the change feed never ran dry")


def test_changes_from_now(backend: str, new_store: StoreFactory) -> None:
    writer = new_store()
    writer.create(JOBS, "before", {"name": "before"})
    reader = new_store()  # another node on the same database

    changes, position = reader.changes(None)
    assert changes == [] and isinstance(position, str)

    rev = writer.create(JOBS, "nightly", {"name": "nightly", "enabled": True})
    doc_id, body = execution("nightly", 34)
    writer.create(EXECUTIONS, doc_id, body)

    changes, position2 = _drain(reader, position)
    assert Change(JOBS, "nightly") in changes
    assert Change(EXECUTIONS, doc_id) in changes
    assert Change(JOBS, "before") not in changes
    if backend in EXACT_FEED:
        assert sorted(changes, key=str) == sorted(
            [Change(JOBS, "nightly"), Change(EXECUTIONS, doc_id)], key=str
        )

    # Nothing new: nothing reported (strictly so in SQLite; CouchDB may replay, never skip).
    again, position3 = reader.changes(position2)
    if backend in EXACT_FEED:
        assert again == [] and position3 == position2

    writer.update(JOBS, "nightly", {"name": "nightly", "enabled": False}, rev)
    changes, _ = _drain(reader, position3)
    assert Change(JOBS, "nightly") in changes
    if backend in EXACT_FEED:
        assert changes == [Change(JOBS, "nightly")]


def test_changes_in_small_batches(backend: str, store: DocumentStore) -> None:
    _, position = store.changes(None)
    expected = set()
    for i in range(7):
        store.create(JOBS, f"job{i}", {"name": f"job{i}", "enabled": True})
        doc_id, body = execution(f"job{i}", i)
        store.create(EXECUTIONS, doc_id, body)
        expected |= {Change(JOBS, f"job{i}"), Change(EXECUTIONS, doc_id)}
    first, _ = store.changes(position, limit=3)
    assert 1 <= len(first) <= 3
    changes, _ = _drain(store, position, limit=3)
    assert set(changes) == expected
    if backend in EXACT_FEED:
        assert len(changes) == len(expected)  # once each


def test_changes_from_the_start(backend: str, store: DocumentStore) -> None:
    doc_id, body = execution("a", 1)
    rev = store.create(EXECUTIONS, doc_id, body)
    for status in ("succeeded", "failed", "lost"):
        rev = store.update(EXECUTIONS, doc_id, {**body, "status": status}, rev)
    if backend in EXACT_FEED:
        changes, _ = _drain(store, "0")
        assert changes == [Change(EXECUTIONS, doc_id)]  # one row per document, not per write


# ---------------------------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------------------------


def test_concurrent_creates_from_threads(new_store: StoreFactory) -> None:
    """Leaders in two threads (one store each, and one shared) insert the same attempts."""
    shared = new_store()
    stores = [new_store(), new_store(), shared, shared]
    ids = [execution("race", minute)[0] for minute in range(10)]
    barrier = threading.Barrier(len(stores))
    wins: list[list[str]] = [[] for _ in stores]
    errors: list[BaseException] = []

    def leader(index: int) -> None:
        try:
            for doc_id in ids:
                barrier.wait(timeout=30)
                try:
                    stores[index].create(EXECUTIONS, doc_id, {"job": "race", "node": f"n{index}"})
                    wins[index].append(doc_id)
                except ConflictError:
                    pass
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=leader, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted(doc_id for won in wins for doc_id in won) == sorted(ids)  # exactly one winner each
    for doc_id in ids:
        winner = next(i for i, won in enumerate(wins) if doc_id in won)
        assert shared.get(EXECUTIONS, doc_id)["node"] == f"n{winner}"


def _leader_process(url: str, node: str, ids: list[str], start: Any, results: Any) -> None:
    store = _store_for_url(url)
    store.open()
    won = []
    start.wait(30)
    for doc_id in ids:
        try:
            store.create(EXECUTIONS, doc_id, {"job": "race", "node": node})
            won.append(doc_id)
        except ConflictError:
            pass
    store.close()
    results.put((node, won))


@pytest.mark.parametrize("backend", REAL_BACKENDS)
def test_concurrent_creates_from_processes(backend: str, store_url: str, new_store: StoreFactory) -> None:
    """Two dcrond processes sharing one store insert the same attempts: one wins each."""
    store = new_store()  # creates the database first, as the first node to start would
    ids = [execution("race", minute)[0] for minute in range(40)]
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    results = context.Queue()
    processes = [
        context.Process(target=_leader_process, args=(store_url, f"p{i}", ids, start, results))
        for i in range(2)
    ]
    for process in processes:
        process.start()
    start.set()
    outcome = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    assert sorted(outcome["p0"] + outcome["p1"]) == sorted(ids)
    for doc_id in ids:
        assert store.get(EXECUTIONS, doc_id)["node"] == ("p0" if doc_id in outcome["p0"] else "p1")
    if backend == "sqlite":
        changes, _ = _drain(store, "0")
        assert sorted(c.doc_id for c in changes) == sorted(ids)


def _starting_node(url: str, node: str, start: Any, results: Any) -> None:
    start.wait(30)
    try:
        store = _store_for_url(url)
        store.open()
        won = 0
        for minute in range(20):
            try:
                store.create(EXECUTIONS, execution("race", minute)[0], {"job": "race", "node": node})
                won += 1
            except ConflictError:
                pass
        store.close()
        results.put((node, won))
    except Exception as exc:
        results.put((node, repr(exc)))


def test_sqlite_nodes_starting_together_on_a_new_file(tmp_path: Path) -> None:
    """Several dcrond nodes of one host open a database file that does not exist yet, at once."""
    context = multiprocessing.get_context("fork")
    for round_ in range(4):
        url = f"sqlite://{tmp_path}/round{round_}/dcron.db"
        start = context.Event()
        results = context.Queue()
        nodes = [
            context.Process(target=_starting_node, args=(url, f"n{i}", start, results)) for i in range(4)
        ]
        for node in nodes:
            node.start()
        start.set()
        outcome = dict(results.get(timeout=60) for _ in nodes)
        for node in nodes:
            node.join(30)
        assert all(isinstance(won, int) for won in outcome.values()), outcome
        assert sum(outcome.values()) == 20


# ---------------------------------------------------------------------------------------------
# Outages and reopening
# ---------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the database's directory should be")
        return f"sqlite://{blocker}/state/dcron.db"
    return f"http://127.0.0.1:{_closed_port()}/dcron"


@pytest.mark.parametrize("backend", REAL_BACKENDS)
def test_unreachable_store_raises_unavailable(unreachable_url: str) -> None:
    store = _store_for_url(unreachable_url)
    started = time.monotonic()
    with pytest.raises(UnavailableError) as info:
        store.open()
    with pytest.raises(UnavailableError):
        store.create(JOBS, "x", {"name": "x"})
    with pytest.raises(UnavailableError):
        store.get(JOBS, "x")
    with pytest.raises(UnavailableError):
        store.find(JOBS, {"enabled": True})
    with pytest.raises(UnavailableError):
        store.changes(None)
    with pytest.raises(UnavailableError):
        store.delete(JOBS, "x", "1-abc")
    assert time.monotonic() - started < 10
    if unreachable_url.startswith("http"):
        assert urlsplit(unreachable_url).netloc in str(info.value)
    else:
        assert "not-a-directory" in str(info.value)
    store.close()


def test_couchdb_server_that_never_answers(tmp_path: Path) -> None:
    """A server that accepts connections but never answers: UnavailableError after the timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # never accept(): the kernel completes handshakes, nobody answers
        port = listener.getsockname()[1]
        store = CouchDBDocumentStore(f"http://127.0.0.1:{port}/dcron?timeout=1")
        started = time.monotonic()
        with pytest.raises(UnavailableError, match=f"127.0.0.1:{port}"):
            store.open()
        with pytest.raises(UnavailableError):
            store.get(JOBS, "x")
        assert time.monotonic() - started < 6
        store.close()


class _FakeCouch(http.server.BaseHTTPRequestHandler):
    """Answers every request with the class's ``status``/``content_type``/``body``; records headers."""

    status = 500
    content_type = "application/json"
    body = b'{"error":"internal_server_error","reason":"boom"}'
    seen: ClassVar[list[str | None]] = []

    def _answer(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_PUT = do_POST = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "content_type", "body", "message"),
    [
        (500, "application/json", b'{"error":"internal_server_error","reason":"boom"}', "server error"),
        (503, "text/html", b"<html>maintenance</html>", "HTTP 503"),
        (
            401,
            "application/json",
            b'{"error":"unauthorized","reason":"Name or password is incorrect."}',
            "refused",
        ),
        (200, "text/plain", b"I am not CouchDB", "unexpected answer"),
    ],
)
def test_couchdb_error_answers_become_unavailable(
    status: int, content_type: str, body: bytes, message: str
) -> None:
    class Handler(_FakeCouch):
        pass

    Handler.status, Handler.content_type, Handler.body, Handler.seen = status, content_type, body, []
    handler = Handler
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        store = CouchDBDocumentStore(f"http://admin:p%40ss@127.0.0.1:{port}/dcron", timeout=2)
        with pytest.raises(UnavailableError, match=message):
            store.open()
        assert handler.seen and handler.seen[0] == "Basic " + base64.b64encode(b"admin:p@ss").decode()
        store.close()
    finally:
        server.shutdown()
        server.server_close()


def test_couchdb_password_is_not_shown() -> None:
    url = f"http://admin:s3cret@127.0.0.1:{_closed_port()}/dcron"
    store = CouchDBDocumentStore(url, timeout=2)
    with pytest.raises(UnavailableError) as info:
        store.open()
    assert "s3cret" not in str(info.value) and "admin" in str(info.value)
    assert "s3cret" not in repr(store)


def test_sqlite_locked_by_another_process_raises_unavailable(tmp_path: Path) -> None:
    """Another process holds the write lock past our timeout: UnavailableError, then recovery."""
    path = tmp_path / "dcron.db"
    store = SQLiteDocumentStore(str(path), timeout=0.5)
    store.open()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(UnavailableError, match=r"dcron\.db"):
            store.create(JOBS, "x", {"name": "x"})
        assert 0.4 < time.monotonic() - started < 5
        assert store.find(JOBS, {}) == []  # readers are not blocked in WAL mode
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.create(JOBS, "x", {"name": "x"})
    assert store.get(JOBS, "x")["name"] == "x"
    store.close()


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "dcron.db"
    path.write_bytes(b"this is not an SQLite database, but it is long enough to look like a header" * 20)
    store = SQLiteDocumentStore(str(path), timeout=1)
    with pytest.raises(UnavailableError, match="not a database"):
        store.open()
    store.close()


def test_open_twice_and_reopen(backend: str, new_store: StoreFactory, store_url: str) -> None:
    first = new_store()
    first.open()
    first.open()
    rev = first.create(JOBS, "kept", {"name": "kept", "enabled": True})
    first.find(EXECUTIONS, {"job": "kept"}, sort=[("fire_time", True), ("attempt", True)])
    before = _schema(backend, store_url)
    first.close()

    second = new_store()
    second.open()
    assert second.get(JOBS, "kept")["_rev"] == rev
    assert [d["_id"] for d in second.find(JOBS, {}, sort=[("_id", False)])] == ["kept"]
    assert _schema(backend, store_url) == before  # nothing created twice


def _schema(backend: str, url: str) -> list[str]:
    """What ``open`` creates: SQLite's schema objects, or CouchDB's design documents (memory: none)."""
    if backend == "memory":
        return []
    if backend == "sqlite":
        path, _ = sqlite_module.parse_url(url)
        with sqlite3.connect(path) as conn:
            return sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_master"))
    base, _, prefix = url.rpartition("/")
    names = []
    for collection in (JOBS, EXECUTIONS):
        answer = requests.get(f"{base}/{prefix}_{collection}/_index", timeout=5).json()
        names += sorted(f"{collection}:{index['name']}" for index in answer["indexes"])
    return names


def test_closed_store_refuses_calls(store: DocumentStore) -> None:
    store.close()
    with pytest.raises(Exception) as info:
        store.get(JOBS, "x")
    assert "closed" in str(info.value)


# ---------------------------------------------------------------------------------------------
# URLs and the plugin hooks
# ---------------------------------------------------------------------------------------------


def test_sqlite_urls(tmp_path: Path) -> None:
    absolute = sqlite_module.dcron_document_store(f"sqlite://{tmp_path}/a.db", {})
    assert isinstance(absolute, SQLiteDocumentStore) and absolute.path == f"{tmp_path}/a.db"
    relative = sqlite_module.dcron_document_store(
        "sqlite://state/b.db?timeout=2.5", {"data_dir": str(tmp_path)}
    )
    assert isinstance(relative, SQLiteDocumentStore)
    assert relative.path == f"{tmp_path}/state/b.db" and relative.timeout == 2.5
    relative.open()
    assert (tmp_path / "state" / "b.db").exists()
    relative.close()
    for url in ("http://127.0.0.1:5984/dcron", "file:///tmp/x", "zk://h:2181"):
        assert sqlite_module.dcron_document_store(url, {}) is None
    for bad in (
        "sqlite://",
        "sqlite:///",
        "sqlite:/tmp/x.db",
        "sqlite:///x.db?timeout=soon",
        "sqlite:///x?mode=ro",
    ):
        with pytest.raises(ValidationError):
            sqlite_module.dcron_document_store(bad, {})


def test_couchdb_urls() -> None:
    plain = couchdb_module.dcron_document_store("http://127.0.0.1:5984/prod", {})
    assert isinstance(plain, CouchDBDocumentStore) and plain.prefix == "prod"
    assert plain.db_name(JOBS) == "prod_jobs" and plain.db_name(EXECUTIONS) == "prod_executions"
    default = couchdb_module.dcron_document_store("https://127.0.0.1:6984/", {"couchdb_timeout": 2})
    assert isinstance(default, CouchDBDocumentStore) and default.prefix == "dcron" and default.timeout == 2
    proxied = couchdb_module.parse_url("https://u:p%40ss@couch.example.org/couchdb/team_a?timeout=3")
    assert proxied == ("https://u:p%40ss@couch.example.org/couchdb", "team_a", 3.0)
    for url in ("sqlite:///x.db", "file:///tmp/x", "zk://h:2181"):
        assert couchdb_module.dcron_document_store(url, {}) is None
    for bad in (
        "http://127.0.0.1:5984/Upper",
        "http://127.0.0.1:5984/9lives",
        "http://:5984/x",
        "http://h:port/x",
    ):
        with pytest.raises(ValidationError):
            couchdb_module.dcron_document_store(bad, {})


# ---------------------------------------------------------------------------------------------
# Throughput sanity (not a benchmark): the leader and workers write one create and one update per
# run, and 1,000 jobs can be due in the same second.
# ---------------------------------------------------------------------------------------------


def test_sqlite_thousand_runs_sanity(tmp_path: Path) -> None:
    store = SQLiteDocumentStore(str(tmp_path / "dcron.db"))
    store.open()

    def runs(first: int, count: int) -> None:
        for i in range(first, first + count):
            doc_id, body = execution(f"job{i}", 34)
            rev = store.create(EXECUTIONS, doc_id, {**body, "node": "n1"})
            store.update(
                EXECUTIONS, doc_id, {**body, "node": "n1", "status": "succeeded", "exit_code": 0}, rev
            )

    started = time.monotonic()
    runs(0, 1000)
    single = time.monotonic() - started

    started = time.monotonic()
    threads = [threading.Thread(target=runs, args=(1000 + 250 * t, 250)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    threaded = time.monotonic() - started

    print(f"sqlite: 1000 create+update in {single:.2f} s (one thread), {threaded:.2f} s (four threads)")
    assert len(store.find(EXECUTIONS, {"status": "succeeded"})) == 2000
    # Generous: a regression to an fsync per commit or a table scan per write shows up as far worse.
    assert single < 20 and threaded < 20
    store.close()


def test_the_dashboards_queries_by_status_newest_first(store: DocumentStore) -> None:
    """Records.executions(status=) and Records.recent_executions, what /jobs/NAME and /runs ask."""
    from libdcron.records import Records

    store.create_many(
        EXECUTIONS,
        [
            execution("a", 1, status="succeeded"),
            execution("a", 2, status="failed"),
            execution("a", 3, status="succeeded"),
            execution("b", 4, status="failed"),
            execution("b", 5, status="running"),
        ],
    )
    records = Records(store)
    assert [e.fire_time.minute for e in records.executions("a", 10, status="succeeded")] == [3, 1]
    assert [e.fire_time.minute for e in records.executions("a", 10)] == [3, 2, 1]
    assert [(e.job, e.fire_time.minute) for e in records.recent_executions(10, status="failed")] == [("b", 4), ("a", 2)]
    assert [e.fire_time.minute for e in records.recent_executions(2)] == [5, 4]
    assert [e.fire_time.minute for e in records.recent_executions(2, skip=2)] == [3, 2]


def _requests_of(store: CouchDBDocumentStore) -> list[str]:
    """What the store asks its server from now on (each request's description), as it asks."""
    asked: list[str] = []
    call = store._call

    def spy(what: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(what)
        return call(what, *args, **kwargs)

    store._call = spy  # type: ignore[method-assign]
    return asked


@pytest.mark.couchdb
@pytest.mark.parametrize("backend", ["couchdb"])
def test_couchdb_open_of_a_fresh_prefix_makes_every_index_once(store_url: str) -> None:
    """``open`` on a fresh prefix creates both databases and all their indexes; a later ``find``
    does not ask for an index again (on pouchdb-server that took longer than the request timeout
    at 100,000 jobs, and LIST failed)."""
    store = CouchDBDocumentStore(store_url)
    store.open()
    asked = _requests_of(store)
    try:
        store.create(JOBS, "a", {"name": "a", "enabled": True})
        store.find(JOBS, {}, sort=[("_id", False)], limit=10, after=("_id", "a"))  # LIST, a leader's load
        store.find(EXECUTIONS, {"status": "running"})
        assert [w for w in asked if w.startswith("create index")] == []
    finally:
        store.close()


@pytest.mark.couchdb
@pytest.mark.parametrize("backend", ["couchdb"])
def test_couchdb_writes_bring_their_collections_indexes_up_to_date(store_url: str) -> None:
    """After a write the store queries each index of the collection in the background, so that
    the next query does not wait for CouchDB to index everything written (pouchdb-server has no
    background indexing: 40 s per index at 100,000 jobs, beyond a request's timeout)."""
    store = CouchDBDocumentStore(store_url, warm_interval=0.05)
    store.open()
    asked = _requests_of(store)
    try:
        assert store.warmer.passes == {}
        store.create_many(EXECUTIONS, [execution("a", minute) for minute in range(50)])
        deadline = time.monotonic() + 30
        while store.warmer.passes.get(EXECUTIONS, 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.warmer.passes.get(EXECUTIONS) == 1 and store.warmer.failures == {}
        warmed = sorted(w.split()[2] for w in asked if w.startswith("bring index"))
        assert warmed == sorted(f"dcron-{'-'.join(fields)}" for fields in couchdb_module.INDEXES[EXECUTIONS])
        assert JOBS not in store.warmer.passes  # not written to
    finally:
        store.close()
    off = CouchDBDocumentStore.from_url(store_url, {"couchdb_index_warming": "0"})
    try:
        off.create(EXECUTIONS, *execution("k", 1))
        assert off.warmer.interval == 0 and off.warmer.passes == {}
    finally:
        off.close()
