"""The worker on the embedded store and a local folder: accepting, declining, script cache, errors."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dcron_plugins.interpreters import PathInterpreter, PythonInterpreter
from dcron_plugins.storage_local import LocalObjectStore
from dcron_plugins.store_sqlite import SQLiteDocumentStore

import libdcron.worker as worker_module
from libdcron.abc import EXECUTIONS, Interpreter, ObjectStore
from libdcron.model import Job, format_instant, parse_instant, utcnow
from libdcron.recorder import Recorder
from libdcron.testing import wait_for
from libdcron.worker import Worker

from .test_proctree import gone


class CountingStore(LocalObjectStore):
    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.downloads = 0

    def get_file(self, url: str, local_path: str) -> None:
        self.downloads += 1
        super().get_file(url, local_path)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Worker, SQLiteDocumentStore, CountingStore]]:
    store = SQLiteDocumentStore(str(tmp_path / "db.sqlite3"))
    store.open()
    objects = CountingStore(f"file://{tmp_path / 'objects'}")

    def resolve(url: str) -> ObjectStore:
        return objects

    recorder = Recorder(store, resolve, tmp_path / "outbox")
    interps: dict[str, Interpreter] = {
        "python": PythonInterpreter(),
        "sh": PathInterpreter("sh", "sh", ".sh"),
        "nosuch": PathInterpreter("nosuch", "no-such-program-here", ""),
    }
    worker = Worker("w1", recorder, objects, resolve, lambda: interps, tmp_path / "node", capacity=2)
    yield worker, store, objects
    worker.stop(grace=1)
    recorder.close()
    store.close()


def dispatch(worker: Worker, job: Job, attempt: int = 1, delay: float = 0.0) -> dict[str, Any]:
    fire = (utcnow() + timedelta(seconds=delay)).replace(microsecond=0) + timedelta(seconds=1)
    return worker.dispatch({"job": job.to_doc(), "fire_time": format_instant(fire), "attempt": attempt})


def wait_done(store: SQLiteDocumentStore, job: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        docs = [d for d in store.find(EXECUTIONS, {"job": job}) if d["status"] != "running"]
        return docs if len(docs) >= count else None

    return wait_for(done, timeout, message=f"{job}: {count} finished executions")


def upload(objects: LocalObjectStore, key: str, text: str) -> tuple[str, str]:
    url = objects.url_for(key)
    objects.put_bytes(text.encode(), url)
    return url, hashlib.sha256(text.encode()).hexdigest()


def test_scripts_are_fetched_once_and_cached(
    parts: tuple[Worker, SQLiteDocumentStore, CountingStore],
) -> None:
    worker, store, objects = parts
    url, sha = upload(objects, "scripts/a.sh", "echo hi\n")
    job = Job("a", "* * * * *", "sh", url, script_sha256=sha)
    assert dispatch(worker, job)["accepted"]
    wait_done(store, "a", 1)
    assert dispatch(worker, job)["accepted"]
    wait_done(store, "a", 2)
    assert objects.downloads == 1


def test_script_without_checksum_is_cached_by_location_and_version(
    parts: tuple[Worker, SQLiteDocumentStore, CountingStore],
) -> None:
    worker, store, objects = parts
    url, _ = upload(objects, "scripts/b.sh", "echo one\n")
    job = Job("b", "* * * * *", "sh", url)
    dispatch(worker, job)
    wait_done(store, "b", 1)
    time.sleep(0.01)
    upload(objects, "scripts/b.sh", "echo two two\n")  # rewritten: a new version
    dispatch(worker, job)
    wait_done(store, "b", 2)
    assert objects.downloads == 2


@pytest.mark.parametrize(
    ("interpreter", "script", "sha", "reason"),
    [
        ("sh", "scripts/missing.sh", None, "not found in object storage"),
        ("sh", "scripts/c.sh", "0" * 64, "but the job expects"),
        ("nosuch", "scripts/c.sh", None, "needs 'no-such-program-here' on PATH"),
        ("ruby-not-registered", "scripts/c.sh", None, "unknown interpreter"),
    ],
)
def test_runs_that_cannot_start_are_recorded_as_errors(
    parts: tuple[Worker, SQLiteDocumentStore, CountingStore],
    interpreter: str,
    script: str,
    sha: str | None,
    reason: str,
) -> None:
    worker, store, objects = parts
    upload(objects, "scripts/c.sh", "echo c\n")
    job = Job("c", "* * * * *", interpreter, objects.url_for(script), script_sha256=sha)
    assert dispatch(worker, job)["accepted"]
    doc = wait_done(store, "c", 1)[0]
    assert doc["status"] == "error"
    assert reason in doc["reason"]
    assert doc["started"] is None and doc["ended"], "it never started: no start time after its end"
    assert list(worker.spool_dir.iterdir()) == [], "no log file left behind"


def test_a_run_sent_ahead_has_no_start_time_until_it_starts(
    parts: tuple[Worker, SQLiteDocumentStore, CountingStore],
) -> None:
    worker, store, objects = parts
    url, _ = upload(objects, "scripts/ahead.sh", "echo ahead\n")
    assert dispatch(worker, Job("ahead", "0 0 1 1 *", "sh", url), delay=2)["accepted"]
    (doc,) = store.find(EXECUTIONS, {"job": "ahead"})
    assert doc["status"] == "running" and doc["started"] is None, "not a start time in the future"
    assert [r["started"] for r in worker.running()] == [None]
    done = wait_done(store, "ahead", 1)[0]
    fire, started, ended = (parse_instant(done[k]) for k in ("fire_time", "started", "ended"))
    assert done["status"] == "succeeded" and fire <= started <= ended


def test_busy_worker_declines_and_a_second_insert_is_a_duplicate(
    parts: tuple[Worker, SQLiteDocumentStore, CountingStore],
) -> None:
    worker, store, objects = parts
    url, sha = upload(objects, "scripts/s.sh", "sleep 1\n")
    jobs = [Job(f"s{i}", "* * * * *", "sh", url, script_sha256=sha) for i in range(3)]
    assert dispatch(worker, jobs[0])["accepted"]
    assert dispatch(worker, jobs[1])["accepted"]
    assert dispatch(worker, jobs[2]) == {"accepted": False, "reason": "busy"}
    # The same attempt dispatched again (a retried DISPATCH) is accepted once, not run twice.
    fire = format_instant((utcnow() + timedelta(seconds=5)).replace(microsecond=0))
    body = {"job": jobs[2].to_doc(), "fire_time": fire, "attempt": 1}
    wait_done(store, "s0", 1)
    assert worker.dispatch(body)["accepted"]
    assert worker.dispatch(body)["accepted"]  # idempotent while it is in progress here
    other = Worker(
        "w2",
        worker.recorder,
        objects,
        worker.resolve_objects,
        worker.interpreters,
        worker.work_dir.parent / "w2",
    )
    assert other.dispatch(body) == {"accepted": False, "duplicate": True}  # the store says it exists


def test_stop_gives_up_runs_waiting_for_their_fire_time_at_once(
    parts: tuple[Worker, SQLiteDocumentStore, CountingStore],
) -> None:
    worker, store, objects = parts
    url, sha = upload(objects, "scripts/w.sh", "echo late\n")
    job = Job("w", "* * * * *", "sh", url, script_sha256=sha)
    assert dispatch(worker, job, delay=30)["accepted"]  # sent 30 s ahead of its fire time
    time.sleep(0.3)
    started = time.monotonic()
    worker.stop(grace=5)
    assert time.monotonic() - started < 2.0
    doc = wait_done(store, "w", 1)[0]
    assert doc["status"] == "lost" and "before the start" in doc["reason"]
    assert list(worker.spool_dir.iterdir()) == [], "the log staged for it is removed"


def test_a_stop_just_after_a_start_timer_fired_records_the_run_lost_once(
    parts: tuple[Worker, SQLiteDocumentStore, CountingStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run's start timer has fired (its start is queued for a spawning thread) when the stop
    # comes: the stop cannot cancel the timer any more, so both it and the start give the run up.
    worker, store, objects = parts
    url, sha = upload(objects, "scripts/r.sh", "echo never\n")
    fired, release = threading.Event(), threading.Event()
    start = worker._start

    def held_start(handle: Any) -> None:
        fired.set()
        release.wait(10)
        start(handle)

    monkeypatch.setattr(worker, "_start", held_start)
    given: list[str] = []
    give_back = worker.workdirs.give_back
    monkeypatch.setattr(worker.workdirs, "give_back", lambda path: (given.append(path), give_back(path)))
    assert dispatch(worker, Job("r", "* * * * *", "sh", url, script_sha256=sha))["accepted"]
    assert fired.wait(5), "the start timer fired"
    stopping = threading.Thread(target=worker.stop, kwargs={"grace": 5})
    stopping.start()
    wait_done(store, "r", 1)  # recorded by the stop while the start still waits
    release.set()
    stopping.join(10)
    assert not stopping.is_alive()
    worker.recorder.flush()
    docs = store.find(EXECUTIONS, {"job": "r"})
    assert [(d["status"], d["reason"]) for d in docs] == [("lost", "node shut down before the start")]
    assert worker.in_progress() == 0
    assert worker.metrics.registry.get_sample_value("dcron_lost_runs_total") == 1, "its end is counted once"
    assert len(given) == 1, "its folder is given back once"
    assert list(worker.spool_dir.iterdir()) == [], "the log staged for it is removed"


def test_a_staged_run_has_its_log_file_before_its_fire_time(
    parts: tuple[Worker, SQLiteDocumentStore, CountingStore],
) -> None:
    worker, store, objects = parts
    url, sha = upload(objects, "scripts/l.sh", "echo staged\n")
    assert dispatch(worker, Job("l", "* * * * *", "sh", url, script_sha256=sha), delay=2)["accepted"]
    wait_for(lambda: list(worker.spool_dir.iterdir()), 2.0, message="the log file staged ahead")
    (ex_id,) = [r["id"] for r in worker.running()]
    assert worker.read_log(ex_id, 0, 100) == (b"", 0), "an empty log until the run starts"
    doc = wait_done(store, "l", 1)[0]
    assert doc["status"] == "succeeded"
    assert objects.read_range(doc["log"], 0, 100) == b"staged\n"
    assert list(worker.spool_dir.iterdir()) == [], "moved into object storage"


def test_an_end_waiting_for_spawns_wakes_when_the_last_is_answered(
    parts: tuple[Worker, SQLiteDocumentStore, CountingStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, _, _ = parts
    monkeypatch.setattr(worker_module, "YIELD_TO_SPAWNS", 60.0)  # a lost wake-up would wait a minute
    waiting = [1]
    monkeypatch.setattr(worker, "_spawns_waiting", lambda: waiting[0])
    done = threading.Event()
    thread = threading.Thread(target=lambda: (worker._yield_to_spawns(), done.set()))
    thread.start()
    worker._spawn_answered()  # one is still waiting: no wake-up for good
    assert not done.wait(0.3)
    waiting[0] = 0
    worker._spawn_answered()
    assert done.wait(10.0), "woken when no spawn is left"
    thread.join()
    started = time.monotonic()
    worker._yield_to_spawns()  # nothing waiting: no wait at all
    assert time.monotonic() - started < 5.0


def test_a_worker_error_right_after_the_start_ends_the_run_and_leaves_nothing_behind(
    parts: tuple[Worker, SQLiteDocumentStore, CountingStore], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    worker, store, objects = parts
    pid_file = tmp_path / "pid"
    url, sha = upload(objects, "scripts/e.sh", f"echo $$ > {pid_file}; exec sleep 30\n")

    def broken(value: float) -> None:
        raise RuntimeError("the start lag could not be observed")

    monkeypatch.setattr(worker.metrics.run_start_lag, "observe", broken)
    assert dispatch(worker, Job("e", "* * * * *", "sh", url, script_sha256=sha))["accepted"]
    doc = wait_done(store, "e", 1)[0]
    assert doc["status"] == "error" and "could not be observed" in doc["reason"]
    assert worker.running() == []
    assert list(worker.spool_dir.iterdir()) == [], "no log file left behind"
    folders = {str(p) for p in (worker.work_dir / "runs").iterdir()}
    assert folders <= set(worker.workdirs._free), "its working folder was given back"
    if pid_file.exists() and pid_file.read_text().strip():
        pid = int(pid_file.read_text())
        wait_for(lambda: gone(pid), 5, message="the run killed")
