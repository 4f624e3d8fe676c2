"""Retention's policy (libdcron.retention) on the in-memory document store and a fake object store:
what is kept, what is deleted and in which order, and what happens when a store fails."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from libdcron.abc import EXECUTIONS, JOBS, ObjectInfo, ObjectStore
from libdcron.config import NodeSettings
from libdcron.daemon import _settings, dcrond
from libdcron.errors import NotFoundError, UnavailableError, ValidationError
from libdcron.model import Execution, Job, Status, legacy_log_key, log_key
from libdcron.records import Records
from libdcron.retention import Policy, Retention, RetentionRunner, SweepReport, own_log
from libdcron.testing import InMemoryDocumentStore, wait_for

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEFAULTS = Policy()
BASE = "mem://objects"


class MemoryObjects(ObjectStore):
    """Objects in a dict; ``events`` records deletes in order, shared with :class:`Store`."""

    def __init__(self, events: list[str]) -> None:
        self.base_url = BASE
        self.objects: dict[str, bytes] = {}
        self.events = events
        self.down = False

    def owns(self, url: str) -> bool:
        return url.startswith("mem://")

    def put_file(self, local_path: str, url: str) -> None:
        raise NotImplementedError

    def put_bytes(self, data: bytes, url: str) -> None:
        self.objects[url] = data

    def get_file(self, url: str, local_path: str) -> None:
        raise NotImplementedError

    def read_range(self, url: str, offset: int, length: int) -> bytes:
        return self.objects[url][offset : offset + length]

    def stat(self, url: str) -> ObjectInfo:
        if url not in self.objects:
            raise NotFoundError(url)
        return ObjectInfo(len(self.objects[url]), "1")

    def delete(self, url: str) -> None:
        if self.down:
            raise UnavailableError(f"object store unavailable while deleting {url}")
        self.events.append(f"object {url}")
        self.objects.pop(url, None)


class Store(InMemoryDocumentStore):
    """The in-memory store, recording deletes; ``before_delete`` runs first (a fault, a race)."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events
        self.before_delete: Callable[[str, str], None] | None = None

    def delete(self, collection: str, doc_id: str, rev: str) -> None:
        if self.before_delete is not None:
            self.before_delete(collection, doc_id)
        super().delete(collection, doc_id, rev)
        self.events.append(f"document {doc_id}")


class World:
    def __init__(self, policy: Policy = DEFAULTS, page: int = 100) -> None:
        self.events: list[str] = []
        self.store = Store(self.events)
        self.objects = MemoryObjects(self.events)
        self.records = Records(self.store)
        self.retention = Retention(self.store, self.resolve, policy, page=page, rate=None, clock=lambda: NOW)

    def resolve(self, url: str) -> ObjectStore:
        if not url.startswith(BASE + "/"):
            raise ValidationError(f"{url} is outside the object stores")
        return self.objects

    def job(self, name: str, **fields: Any) -> Job:
        job = Job(name, "* * * * *", "sh", f"{BASE}/scripts/{name}.sh", **fields)
        self.records.create_job(job)
        return job

    def run(
        self, job: str, ago: timedelta, attempt: int = 1, status: Status = Status.SUCCEEDED, log: str | None = ""
    ) -> Execution:
        """An execution of ``job`` fired ``ago`` before NOW, with its own log unless ``log`` says."""
        fire = NOW - ago
        url = f"{BASE}/{log_key(job, fire, attempt)}" if log == "" else log
        ex = Execution(job, fire, attempt, "n1", status, log=url)
        self.records.create_execution(ex)
        if url:
            self.objects.put_bytes(b"log", url)
        return ex

    def left(self, job: str) -> list[str]:
        return [ex.id for ex in self.records.executions(job, limit=1000)]

    def sweep(self) -> SweepReport:
        return self.retention.sweep_once()


def minutes(*values: int) -> list[timedelta]:
    return [timedelta(minutes=v) for v in values]


def test_keep_runs_keeps_the_newest_fire_times_and_their_logs() -> None:
    w = World()
    w.job("a", keep_runs=2)
    runs = [w.run("a", ago) for ago in minutes(1, 2, 3, 4, 5)]
    report = w.sweep()
    assert w.left("a") == [runs[0].id, runs[1].id]
    assert sorted(w.objects.objects) == sorted(str(r.log) for r in runs[:2])
    assert (report.executions, report.logs, report.jobs, report.complete) == (3, 3, 1, True)
    assert w.sweep().executions == 0  # nothing left to do


def test_keep_runs_counts_fire_times_not_attempts() -> None:
    w = World()
    w.job("a", keep_runs=2)
    newest = w.run("a", timedelta(minutes=1))
    retried = [w.run("a", timedelta(minutes=2), 1, Status.TIMEOUT), w.run("a", timedelta(minutes=2), 2)]
    old = [w.run("a", timedelta(minutes=3), 1, Status.LOST), w.run("a", timedelta(minutes=3), 2)]
    w.sweep()
    assert sorted(w.left("a")) == sorted([newest.id, *(r.id for r in retried)])
    assert not any(str(r.log) in w.objects.objects for r in old)


def test_keep_days_and_the_newest_run_always_stays() -> None:
    w = World(Policy(keep_runs=0, keep_days=2))
    w.job("recent")
    w.job("stopped")  # last ran long ago: its newest run stays, with every attempt
    recent = [w.run("recent", timedelta(days=d)) for d in (0, 1, 3, 4)]
    stopped = [w.run("stopped", timedelta(days=40), a) for a in (1, 2)] + [w.run("stopped", timedelta(days=41))]
    report = w.sweep()
    assert w.left("recent") == [recent[0].id, recent[1].id]
    assert w.left("stopped") == [stopped[1].id, stopped[0].id]
    assert report.executions == 3


def test_both_limits_apply() -> None:
    w = World(Policy(keep_runs=3, keep_days=1))
    w.job("a")
    runs = [w.run("a", ago) for ago in (timedelta(hours=1), timedelta(hours=2), timedelta(days=2), timedelta(days=3))]
    w.job("b")  # within a day, beyond 3 runs
    within = [w.run("b", ago) for ago in minutes(1, 2, 3, 4, 5)]
    w.sweep()
    assert w.left("a") == [runs[0].id, runs[1].id]
    assert w.left("b") == [r.id for r in within[:3]]


def test_a_job_setting_replaces_the_clusters_each_on_its_own() -> None:
    w = World(Policy(keep_runs=2, keep_days=0))
    w.job("cluster")  # 2 runs
    w.job("any-number", keep_runs=0)  # no limit at all
    w.job("days", keep_days=1)  # 2 runs and 1 day
    for name in ("cluster", "any-number", "days"):
        for ago in (timedelta(hours=1), timedelta(hours=2), timedelta(days=2), timedelta(days=3)):
            w.run(name, ago)
    w.job("weeks", keep_runs=0, keep_days=7)
    for days in (1, 2, 8, 9):
        w.run("weeks", timedelta(days=days))
    w.sweep()
    assert [len(w.left(n)) for n in ("cluster", "any-number", "days", "weeks")] == [2, 4, 2, 2]
    assert Policy(2, 0).for_job(Job("x", "* * * * *", "sh", "s", keep_days=5)) == Policy(2, 5)


def test_keep_everything() -> None:
    w = World(Policy(0, 0))
    w.job("a")
    for ago in minutes(*range(1, 20)):
        w.run("a", ago + timedelta(days=400))
    assert w.sweep().executions == 0 and len(w.left("a")) == 19


def test_running_executions_are_never_deleted() -> None:
    w = World(Policy(keep_runs=1, keep_days=1))
    w.job("a")
    newest = w.run("a", timedelta(minutes=1))
    stuck = w.run("a", timedelta(days=5), status=Status.RUNNING, log=None)
    w.run("a", timedelta(days=6))
    w.sweep()
    assert w.left("a") == [newest.id, stuck.id]


def test_a_run_whose_log_may_still_be_uploaded_waits_a_day() -> None:
    w = World(Policy(keep_runs=1, keep_days=0))
    w.job("a")
    w.run("a", timedelta(minutes=1))
    pending = w.run("a", timedelta(hours=2), log=None)  # its upload is journaled on its worker
    errored = w.run("a", timedelta(hours=3), status=Status.ERROR, log=None)  # never has a log
    settled = w.run("a", timedelta(days=2), status=Status.FAILED, log=None)
    w.sweep()
    assert pending.id in w.left("a")
    assert errored.id not in w.left("a") and settled.id not in w.left("a")


def test_log_first_then_document_and_a_crash_between_is_finished_next_time() -> None:
    w = World(Policy(keep_runs=1, keep_days=0))
    w.job("a")
    w.run("a", timedelta(minutes=1))
    old = w.run("a", timedelta(minutes=2))
    w.sweep()
    assert w.events == [f"object {old.log}", f"document {old.id}"]

    w.events.clear()
    older = w.run("a", timedelta(minutes=3))

    def crash(collection: str, doc_id: str) -> None:
        raise UnavailableError("document store unavailable")

    w.store.before_delete = crash
    report = w.sweep()
    assert report.error and not report.complete
    assert older.id in w.left("a") and str(older.log) not in w.objects.objects  # log gone, document kept
    w.store.before_delete = None
    report = w.sweep()
    assert older.id not in w.left("a") and report.executions == 1 and report.complete


def test_object_storage_down_skips_the_job_and_keeps_its_documents() -> None:
    w = World(Policy(keep_runs=1, keep_days=0))
    for name in ("a", "b"):
        w.job(name)
        w.run(name, timedelta(minutes=1))
    old_a = w.run("a", timedelta(minutes=2))
    w.run("b", timedelta(minutes=2), status=Status.ERROR, log=None)  # nothing to ask object storage
    w.objects.down = True
    report = w.sweep()
    assert report.skipped_jobs == ["a"] and report.complete
    assert old_a.id in w.left("a") and len(w.left("b")) == 1
    w.objects.down = False
    assert w.sweep().executions == 1 and len(w.left("a")) == 1


def test_a_document_changed_since_it_was_read_waits_for_the_next_sweep() -> None:
    w = World(Policy(keep_runs=1, keep_days=0))
    w.job("a")
    w.run("a", timedelta(minutes=1))
    old = w.run("a", timedelta(minutes=2))

    def race(collection: str, doc_id: str) -> None:
        w.store.before_delete = None
        current = w.records.execution(doc_id)
        w.records.update_execution(current.with_changes(reason="changed"), current.rev or "")

    w.store.before_delete = race
    assert w.sweep().executions == 0 and old.id in w.left("a")
    assert w.sweep().executions == 1 and old.id not in w.left("a")


def test_only_an_executions_own_log_is_deleted() -> None:
    w = World(Policy(keep_runs=1, keep_days=0))
    w.job("a")
    shared = f"{BASE}/{log_key('a', NOW - timedelta(minutes=3), 1)}"
    kept = w.run("a", timedelta(minutes=1), log=shared)  # points at another attempt's log
    foreign = w.run("a", timedelta(minutes=2), log=f"{BASE}/elsewhere/x.log")
    elsewhere = f"mem://other/{log_key('a', NOW - timedelta(minutes=4), 1)}"
    outside = w.run("a", timedelta(minutes=4), log=elsewhere)  # its own key, in a store not ours
    owner = w.run("a", timedelta(minutes=3))
    assert own_log(owner) and not own_log(foreign) and not own_log(kept)
    report = w.sweep()
    assert w.left("a") == [kept.id]
    assert shared in w.objects.objects  # a kept execution points at it
    assert f"{BASE}/elsewhere/x.log" in w.objects.objects  # not the execution's own
    assert own_log(outside) and elsewhere in w.objects.objects and outside.id not in w.left("a")
    assert (report.executions, report.logs, report.kept_logs) == (3, 0, 3)


def test_many_jobs_and_executions_in_small_pages() -> None:
    w = World(Policy(keep_runs=2, keep_days=0), page=3)
    names = [f"job{i:02d}" for i in range(8)]
    for name in names:
        w.job(name)
        for ago in minutes(*range(1, 12)):
            w.run(name, ago)
    report = w.sweep()
    assert report.jobs == 8 and report.executions == 8 * 9 and report.complete
    assert all(len(w.left(name)) == 2 for name in names)
    assert len(w.objects.objects) == 16


def test_an_unfinished_sweep_resumes_after_the_last_job_done() -> None:
    w = World(Policy(keep_runs=1, keep_days=0), page=2)
    for name in ("a", "b", "c", "d"):
        w.job(name)
        w.run(name, timedelta(minutes=1))
        w.run(name, timedelta(minutes=2))

    def fail_on_c(collection: str, doc_id: str) -> None:
        if doc_id.startswith("c@"):
            raise UnavailableError("document store unavailable")

    w.store.before_delete = fail_on_c
    first = w.sweep()
    assert (first.jobs, first.complete) == (3, False)
    w.store.before_delete = None
    second = w.sweep()
    assert second.jobs == 2 and second.complete  # c and d, then done
    assert all(len(w.left(n)) == 1 for n in "abcd")


def test_stopping_ends_a_sweep() -> None:
    w = World()
    w.job("a")
    w.retention.stopping.set()
    report = w.sweep()
    assert report.error == "stopped" and not report.complete


def test_the_rate_caps_requests_per_second() -> None:
    w = World(Policy(keep_runs=1, keep_days=0))
    w.job("a")
    for ago in minutes(1, 2, 3, 4, 5):
        w.run("a", ago)
    w.retention.rate = 100.0
    started = time.monotonic()
    w.sweep()
    # jobs page, probe, head, 4 x (log + document), one more probe and head: about 13 requests
    assert time.monotonic() - started >= 0.1
    assert len(w.left("a")) == 1


def test_the_runner_sweeps_until_stopped_and_survives_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(Policy(keep_runs=1, keep_days=0))
    w.job("a")
    w.run("a", timedelta(minutes=1))
    w.run("a", timedelta(minutes=2))
    real = w.retention.sweep_once
    calls: list[int] = []
    reports: list[SweepReport] = []

    def flaky() -> SweepReport:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        reports.append(real())
        return reports[-1]

    monkeypatch.setattr(w.retention, "sweep_once", flaky)
    runner = RetentionRunner(w.retention, interval=0.05, first_delay=0.0)
    runner.start()
    wait_for(lambda: len(reports) >= 2, 5)  # (runner.last may be a later sweep's already)
    assert reports[0].executions == 1, "the sweep after the failed one did the work"
    assert reports[1].executions == 0 and runner.last is not None
    runner.stop()
    assert not runner._thread.is_alive()


def test_missing_or_deleted_documents_in_the_store() -> None:
    store = InMemoryDocumentStore()
    rev = store.create(EXECUTIONS, "x", {"job": "a"})
    with pytest.raises(NotFoundError):
        store.delete(EXECUTIONS, "nope", rev)
    store.delete(EXECUTIONS, "x", rev)
    with pytest.raises(NotFoundError):
        store.get(EXECUTIONS, "x")
    assert store.find(JOBS, {}) == []


# -- the job's fields ----------------------------------------------------------------------------


def test_job_documents_with_and_without_retention() -> None:
    plain = Job("a", "* * * * *", "sh", "file:///s.sh")
    assert "keep_runs" not in plain.to_doc() and "keep_days" not in plain.to_doc()
    keeping = plain.with_changes(keep_runs=5, keep_days=0)
    doc: Mapping[str, Any] = keeping.to_doc()
    assert (doc["keep_runs"], doc["keep_days"]) == (5, 0)
    assert Job.from_doc(dict(doc)) == keeping
    old = {k: v for k, v in plain.to_doc().items() if not k.startswith("keep")}
    assert Job.from_doc(old).keep_runs is None and Job.from_doc(old).keep_days is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"keep_runs": -1}, "keep_runs must be between 0 and 1000000"),
        ({"keep_days": 36501}, "keep_days must be between 0 and 36500"),
        ({"keep_runs": "2"}, "keep_runs must be an integer"),
        ({"keep_days": True}, "keep_days must be an integer"),
    ],
)
def test_job_retention_is_validated(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Job("a", "* * * * *", "sh", "file:///s.sh", **fields).validate()


# -- the cluster's settings ----------------------------------------------------------------------


def test_cluster_defaults_and_their_checks(tmp_path: Path) -> None:
    s = NodeSettings(data_dir=tmp_path).resolved()
    assert (s.keep_runs, s.keep_days, s.retention_interval) == (100, 30, 600.0)
    assert NodeSettings(data_dir=tmp_path, keep_runs=0, keep_days=7).resolved().keep_days == 7
    for values, message in (
        ({"keep_runs": -1}, "setting keep_runs must be at least 0, got -1"),
        ({"keep_days": 36501}, "setting keep_days must be at most 36500, got 36501"),
        ({"keep_runs": "5"}, "setting keep_runs must be an integer, got '5'"),
        ({"retention_interval": 0}, "setting retention_interval must be a positive"),
    ):
        with pytest.raises(ValidationError, match=re.escape(message)):
            NodeSettings(data_dir=tmp_path, **values).resolved()


def test_dcrond_flags_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCRON_KEEP_RUNS", "7")
    monkeypatch.setenv("DCRON_KEEP_DAYS", "9")
    params = dcrond.make_context("dcrond", ["--data-dir", str(tmp_path)]).params
    assert (params["keep_runs"], params["keep_days"]) == (7, 9)
    params = dcrond.make_context("dcrond", ["--keep-runs", "3", "--keep-days", "0"]).params
    assert (params["keep_runs"], params["keep_days"]) == (3, 0)  # a flag beats the environment
    config = tmp_path / "dcron.toml"
    config.write_text("[node]\nkeep_runs = 50\nkeep_days = 0\n")
    s = _settings(str(config), {"data_dir": tmp_path, "keep_days": 4}, ())
    assert (s.keep_runs, s.keep_days) == (50, 4)


def test_a_log_under_the_earlier_key_is_still_its_executions_own() -> None:
    w = World(Policy(keep_runs=1, keep_days=0))
    w.job("a")
    fire = NOW - timedelta(minutes=2)
    legacy = f"{BASE}/{legacy_log_key('a', fire, 1)}"
    old = w.run("a", timedelta(minutes=2), log=legacy)
    w.run("a", timedelta(minutes=1))
    assert own_log(old) and not own_log(old.with_changes(attempt=2))
    report = w.sweep()
    assert old.id not in w.left("a") and legacy not in w.objects.objects
    assert (report.executions, report.logs) == (1, 1)
