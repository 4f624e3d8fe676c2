"""The recorder's outbox on the embedded store: document writes in order, uploads never in the way.

Outages are injected with switchable wrappers around a real SQLite store and a real local object
folder.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dcron_plugins.storage_local import LocalObjectStore
from dcron_plugins.store_sqlite import SQLiteDocumentStore

from libdcron.abc import EXECUTIONS, ObjectStore
from libdcron.errors import NotFoundError, UnavailableError, ValidationError
from libdcron.model import Execution, Status, utcnow
from libdcron.recorder import CONFLICT_RETRIES, MAX_BACKOFF, MAX_BACKOFF_ENV, Recorder
from libdcron.testing import wait_for


class FlakyObjects(LocalObjectStore):  # type: ignore[misc]
    down = False

    def put_file(self, local_path: str, url: str) -> None:
        if self.down:
            raise UnavailableError(f"object store unavailable while uploading to {url}: injected")
        super().put_file(local_path, url)

    def move_file(self, local_path: str, url: str) -> None:
        if self.down:
            raise UnavailableError(f"object store unavailable while uploading to {url}: injected")
        super().move_file(local_path, url)


class FlakyStore(SQLiteDocumentStore):
    down = False
    #: This many of the next updates of an execution lose a real race: just before each, another
    #: writer (a leader, say) updates the same document, so the update's revision is stale.
    races = 0
    raced = 0

    def _check(self) -> None:
        if self.down:
            raise UnavailableError("document store unavailable: injected")

    def create(self, collection: str, doc_id: str, body: Mapping[str, Any]) -> str:
        self._check()
        return super().create(collection, doc_id, body)

    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        self._check()
        return super().get(collection, doc_id)

    def update(self, collection: str, doc_id: str, body: Mapping[str, Any], rev: str) -> str:
        self._check()
        if self.races > 0 and collection == EXECUTIONS:
            self.races -= 1
            self.raced += 1
            current = super().get(collection, doc_id)
            other = {k: v for k, v in current.items() if not k.startswith("_")}
            super().update(collection, doc_id, {**other, "incarnation": f"touched-{self.raced}"}, current["_rev"])
        return super().update(collection, doc_id, body, rev)


Parts = tuple[Recorder, FlakyStore, FlakyObjects, Path]


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    store = FlakyStore(str(tmp_path / "db.sqlite3"))
    store.open()
    objects = FlakyObjects(f"file://{tmp_path / 'objects'}")

    def resolve(url: str) -> ObjectStore:
        return objects

    recorder = Recorder(store, resolve, tmp_path / "outbox", max_backoff=0.5)
    spool = tmp_path / "spool"
    spool.mkdir()
    yield recorder, store, objects, spool
    recorder.close()
    store.close()


def running(job: str = "j") -> Execution:
    now = utcnow().replace(microsecond=0)
    return Execution(job=job, fire_time=now, attempt=1, node="n1", status=Status.RUNNING, started=now)


def finish(ex: Execution) -> Execution:
    return ex.with_changes(status=Status.SUCCEEDED, ended=utcnow() + timedelta(seconds=1), exit_code=0)


def wait(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    wait_for(predicate, timeout, interval=0.02)


def spooled(spool: Path, text: str) -> str:
    path = spool / f"{abs(hash(text))}.log"
    path.write_text(text)
    return str(path)


def test_a_failed_upload_does_not_hold_back_the_completion(parts: Parts) -> None:
    recorder, store, objects, spool = parts
    ex = running()
    assert recorder.create(ex)
    objects.down = True
    local = spooled(spool, "output\n")
    url = objects.url_for("logs/j/1.log")
    assert not recorder.upload_log(local, url, ex.id)
    recorder.complete(finish(ex))
    doc = store.get(EXECUTIONS, ex.id)
    assert doc["status"] == "succeeded", "completed at once, although an upload is journaled"
    assert doc.get("log") is None
    assert recorder.pending() == 1
    time.sleep(1.0)  # several replay passes while object storage is down
    assert Path(local).exists() and recorder.pending() == 1
    objects.down = False
    wait(lambda: recorder.pending() == 0)
    assert store.get(EXECUTIONS, ex.id)["log"] == url
    assert objects.read_range(url, 0, 100) == b"output\n"
    assert not Path(local).exists()


def test_uploads_wait_behind_earlier_document_writes(parts: Parts) -> None:
    recorder, store, objects, spool = parts
    ex = running()
    store.down = True
    assert not recorder.create(ex), "journaled"
    local = spooled(spool, "out\n")
    url = objects.url_for("logs/j/2.log")
    # The object store is up, but the upload itself goes straight through; only the log field
    # has to wait for the document.
    assert recorder.upload_log(local, url, ex.id)
    recorder.complete(finish(ex).with_changes(log=url))
    assert recorder.pending() == 2
    time.sleep(0.6)
    assert recorder.pending() == 2, "nothing is replayed out of order"
    store.down = False
    wait(lambda: recorder.pending() == 0)
    doc = store.get(EXECUTIONS, ex.id)
    assert doc["status"] == "succeeded" and doc["log"] == url


def test_a_journaled_upload_after_a_blocked_write_is_kept(parts: Parts) -> None:
    recorder, store, objects, spool = parts
    ex = running()
    store.down = True
    objects.down = True
    recorder.create(ex)
    local = spooled(spool, "late\n")
    url = objects.url_for("logs/j/3.log")
    assert not recorder.upload_log(local, url, ex.id)
    recorder.complete(finish(ex))
    assert recorder.pending() == 3
    store.down = False  # the documents go in; the upload still waits
    wait(lambda: recorder.pending() == 1)
    assert store.get(EXECUTIONS, ex.id)["status"] == "succeeded"
    assert Path(local).exists()
    objects.down = False
    wait(lambda: recorder.pending() == 0)
    assert store.get(EXECUTIONS, ex.id)["log"] == url


def test_max_backoff_from_the_environment(
    parts: Parts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store, objects, _ = parts

    def make() -> Recorder:
        return Recorder(store, lambda url: objects, tmp_path / "outbox2")

    recorder = make()
    assert recorder.max_backoff == MAX_BACKOFF
    recorder.close()
    monkeypatch.setenv(MAX_BACKOFF_ENV, "2.5")
    recorder = make()
    assert recorder.max_backoff == 2.5
    recorder.close()
    for bad in ("soon", "0", "-1", "1e9"):
        monkeypatch.setenv(MAX_BACKOFF_ENV, bad)
        with pytest.raises(ValidationError, match=MAX_BACKOFF_ENV):
            make()


def test_a_log_url_is_recorded_however_often_the_document_changes_under_it(
    parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    recorder, store, objects, spool = parts
    ex = running()
    assert recorder.create(ex)
    objects.down = True
    local = spooled(spool, "raced\n")
    url = objects.url_for("logs/j/4.log")
    assert not recorder.upload_log(local, url, ex.id)
    recorder.complete(finish(ex))
    # Every write of the log URL loses a race, for more than two passes of the outbox.
    races = 2 * CONFLICT_RETRIES + 3
    store.races = races
    with caplog.at_level(logging.WARNING, logger="libdcron.recorder"):
        objects.down = False
        wait(lambda: recorder.pending() == 0, timeout=20)
    doc = store.get(EXECUTIONS, ex.id)
    assert doc.get("log") == url, "the log URL is never dropped"
    assert store.raced == races and store.races == 0
    assert doc["status"] == "succeeded" and doc["incarnation"] == f"touched-{races}", "the other writer's changes are kept"
    assert objects.read_range(url, 0, 100) == b"raced\n" and not Path(local).exists()
    kept = [r.getMessage() for r in caplog.records if "not recorded yet" in r.getMessage()]
    assert len(kept) >= 2 and all(ex.id in message for message in kept), caplog.text


def test_a_completion_racing_a_lost_mark_keeps_the_status_and_sets_the_log(parts: Parts) -> None:
    recorder, store, objects, spool = parts
    ex = running()
    assert recorder.create(ex)
    url = objects.url_for("logs/j/5.log")
    assert recorder.upload_log(spooled(spool, "mine\n"), url, ex.id)
    # A leader marks the attempt lost just before the worker records its end.
    doc = store.get(EXECUTIONS, ex.id)
    lost = {k: v for k, v in doc.items() if not k.startswith("_")}
    store.update(EXECUTIONS, ex.id, {**lost, "status": "lost", "reason": "worker n1 left"}, doc["_rev"])
    store.races = 3  # ... and the document keeps changing while the log URL is written
    recorder.complete(finish(ex).with_changes(log=url))
    doc = store.get(EXECUTIONS, ex.id)
    assert doc["status"] == "lost" and doc["reason"] == "worker n1 left", "the first terminal status stays"
    assert doc["log"] == url, "the attempt's log is recorded on it all the same"
    assert recorder.pending() == 0


def test_a_log_url_for_a_document_not_there_yet_waits_in_the_outbox(parts: Parts) -> None:
    recorder, store, objects, spool = parts
    ex = running()
    objects.down = True
    local = spooled(spool, "early\n")
    url = objects.url_for("logs/j/6.log")
    assert not recorder.upload_log(local, url, ex.id)  # no document yet (journaled out of order)
    objects.down = False
    time.sleep(1.0)  # several passes: the upload is done, the log URL has nowhere to go yet
    assert recorder.pending() == 1 and not Path(local).exists()
    store.create(EXECUTIONS, ex.id, finish(ex).to_doc())
    wait(lambda: recorder.pending() == 0)
    assert store.get(EXECUTIONS, ex.id)["log"] == url


def test_a_pending_upload_of_an_execution_deleted_meanwhile_is_dropped(parts: Parts) -> None:
    recorder, store, objects, spool = parts
    ex = running()
    ex = ex.with_changes(fire_time=ex.fire_time - timedelta(days=2))  # old enough for retention
    assert recorder.create(ex)
    objects.down = True
    url = objects.url_for("logs/j/1.log")
    local = spooled(spool, "the log")
    assert not recorder.upload_log(local, url, ex.id), "journaled while object storage is down"
    recorder.complete(finish(ex))
    doc = store.get(EXECUTIONS, ex.id)
    store.delete(EXECUTIONS, ex.id, doc["_rev"])  # retention deleted it meanwhile
    objects.down = False
    wait(lambda: recorder.pending() == 0)
    assert not Path(local).exists(), "the spooled log is removed"
    assert not objects.exists(url), "and never uploaded: no document names it"


def test_moved_logs_are_flushed_before_the_documents_naming_them_are_written(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, store, objects, spool = parts
    events: list[tuple[str, Any]] = []
    real_sync, real_update_many = objects.sync, store.update_many

    def sync() -> None:
        events.append(("sync", list(objects._moved)))
        real_sync()

    def update_many(collection: str, items: Any) -> Any:
        items = list(items)
        events.append(("write", [doc_id for doc_id, *_ in items]))
        return real_update_many(collection, items)

    monkeypatch.setattr(objects, "sync", sync)
    monkeypatch.setattr(store, "update_many", update_many)
    runs = [running(f"j{i}") for i in range(3)]
    assert all(r is True for r in recorder.create_many(runs))
    urls = [objects.url_for(f"logs/j{i}/1.log") for i in range(3)]
    for ex, url in zip(runs, urls, strict=True):
        assert recorder.upload_log(spooled(spool, f"out {ex.job}\n"), url, ex.id)
        recorder.complete_later(finish(ex).with_changes(log=url))
    assert recorder.flush()
    assert all(store.get(EXECUTIONS, ex.id)["log"] == url for ex, url in zip(runs, urls, strict=True))
    written = [ids for kind, ids in events if kind == "write"]
    assert sorted(i for ids in written for i in ids) == sorted(ex.id for ex in runs)
    path_of = {ex.id: objects.path_of(url) for ex, url in zip(runs, urls, strict=True)}
    for n, (kind, ids) in enumerate(events):  # (the writer may take the first end alone)
        if kind == "write":
            flushed = {p for k, paths in events[:n] if k == "sync" for p in paths}
            assert {path_of[i] for i in ids} <= flushed, events
    assert objects._moved == []
    objects.sync()  # nothing moved since: nothing to do


def test_a_moved_log_deleted_before_the_flush_does_not_fail_it(parts: Parts) -> None:
    _recorder, _store, objects, spool = parts
    kept, gone = objects.url_for("logs/a/1.log"), objects.url_for("logs/b/1.log")
    objects.move_file(spooled(spool, "a\n"), gone)
    objects.move_file(spooled(spool, "b\n"), kept)
    objects.delete(gone)
    objects.sync()
    assert objects.read_range(kept, 0, 10) == b"b\n" and objects._moved == []


def test_a_log_moves_into_a_folder_of_its_own_made_on_the_way_and_beside_the_next(parts: Parts) -> None:
    _recorder, _store, objects, spool = parts
    first, second = objects.url_for("logs/new-job/1.log"), objects.url_for("logs/new-job/2.log")
    assert not os.path.exists(os.path.dirname(objects.path_of(first)))
    a, b = spooled(spool, "first\n"), spooled(spool, "second\n")
    objects.move_file(a, first)  # the folder is made
    objects.move_file(b, second)  # (renamed straight in)
    objects.sync()
    assert objects.read_range(first, 0, 10) == b"first\n" and objects.read_range(second, 0, 10) == b"second\n"
    assert not os.path.exists(a) and not os.path.exists(b)
    with pytest.raises(NotFoundError, match="no such local file"):
        objects.move_file(str(spool / "no-such.log"), objects.url_for("logs/new-job/3.log"))
    assert not os.path.exists(objects.path_of(objects.url_for("logs/new-job/3.log")))
