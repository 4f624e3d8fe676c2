"""The leader's scheduling logic, driven by a fake transport and election.

The document store is the embedded SQLite one on a temporary file; workers are simulated by a
fake transport that records DISPATCH requests and writes execution documents as a worker would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dcron_plugins.store_sqlite import SQLiteDocumentStore

from libdcron import testing
from libdcron.abc import EXECUTIONS, JOBS, Change, Election, Member, Transport
from libdcron.errors import ConflictError, UnavailableError
from libdcron.leader import Leader
from libdcron.model import Execution, Job, Status, execution_id, parse_instant, utcnow
from libdcron.records import Records


class FakeElection(Election):
    def __init__(self, nodes: list[str]) -> None:
        self.nodes = list(nodes)
        self.is_suspended = False

    def start(self, me: Member, on_elected: Callable[[], None], on_deposed: Callable[[], None]) -> None:
        pass

    def stop(self) -> None:
        pass

    def is_leader(self) -> bool:
        return True

    def leader(self) -> Member | None:
        return None

    def members(self) -> list[Member]:
        return [Member(n, f"fake://{n}") for n in sorted(self.nodes)]

    def suspended(self) -> bool:
        return self.is_suspended


class FakeWorkers(Transport):
    """Workers that accept (writing the running document), decline when busy, or are down."""

    def __init__(self, store: SQLiteDocumentStore) -> None:
        self.store = store
        self.busy: set[str] = set()
        self.down: set[str] = set()
        self.dispatched: list[tuple[str, str]] = []  # (node, execution id)
        self.requests = 0
        self.lock = threading.Lock()

    def serve(self, bind: str, handler: Any) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def request(
        self, endpoint: str, command: str, body: Mapping[str, Any], timeout: float = 5.0, retries: int = 2
    ) -> dict[str, Any]:
        assert command == "DISPATCH"
        with self.lock:
            self.requests += 1
        node = endpoint.removeprefix("fake://")
        if node in self.down:
            raise UnavailableError(f"{node} is down")
        if "runs" in body:  # a batch: one reply per run
            return {"replies": [self._one(node, run) for run in body["runs"]]}
        return self._one(node, body)

    def _one(self, node: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if node in self.busy:
            return {"accepted": False, "reason": "busy"}
        fire = parse_instant(body["fire_time"])
        ex = Execution(body["job"]["name"], fire, body["attempt"], node, Status.RUNNING, started=fire)
        try:
            self.store.create(EXECUTIONS, ex.id, ex.to_doc())
        except ConflictError:
            return {"accepted": False, "duplicate": True}
        with self.lock:
            self.dispatched.append((node, ex.id))
        return {"accepted": True, "node": node}

    def ids(self) -> list[str]:
        with self.lock:
            return [i for _, i in self.dispatched]


def finish(store: SQLiteDocumentStore, exec_id: str, status: Status, code: int | None = 0) -> None:
    doc = store.get(EXECUTIONS, exec_id)
    ex = Execution.from_doc(doc).with_changes(status=status, ended=utcnow(), exit_code=code)
    store.update(EXECUTIONS, exec_id, ex.to_doc(), doc["_rev"])


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    return testing.wait_for(predicate, timeout, interval=0.02)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteDocumentStore]:
    s = SQLiteDocumentStore(str(tmp_path / "db.sqlite3"))
    s.open()
    yield s
    s.close()


def add_job(store: SQLiteDocumentStore, name: str, schedule: str, **kw: Any) -> Job:
    job = Job(name, schedule, "sh", "file:///x.sh", **kw)
    store.create(JOBS, name, job.to_doc())
    return job


def make_leader(
    store: SQLiteDocumentStore, nodes: list[str], **kw: Any
) -> tuple[Leader, FakeElection, FakeWorkers]:
    election = FakeElection(nodes)
    workers = FakeWorkers(store)
    leader = Leader("L", store, election, workers, feed_interval=0.05, **kw)
    return leader, election, workers


# -- lookback (clock injected, no threads) ----------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_lookback_runs_the_newest_missed_fire_time_once(store: SQLiteDocumentStore) -> None:
    add_job(store, "j", "*/2 * * * *")
    leader, _, _ = make_leader(store, ["a"], clock=lambda: at("2026-01-01T12:05:30"))
    leader._load()
    js = leader.jobs["j"]
    # 12:00, 12:02 and 12:04 were missed: only the newest runs, right away.
    assert js.run is not None and js.run.fire_time == at("2026-01-01T12:04:00") and js.run.attempt == 1
    assert js.pending is None
    assert js.next_fire == at("2026-01-01T12:06:00")


def test_lookback_ignores_fire_times_older_than_five_minutes(store: SQLiteDocumentStore) -> None:
    add_job(store, "hourly", "0 * * * *")
    leader, _, _ = make_leader(store, ["a"], clock=lambda: at("2026-01-01T12:05:01"))
    leader._load()
    assert leader.jobs["hourly"].run is None
    leader2, _, _ = make_leader(store, ["a"], clock=lambda: at("2026-01-01T12:04:59"))
    leader2._load()
    run = leader2.jobs["hourly"].run
    assert run is not None and run.fire_time == at("2026-01-01T12:00:00")


def test_lookback_skips_a_fire_time_that_already_has_an_execution(store: SQLiteDocumentStore) -> None:
    add_job(store, "j", "*/2 * * * *")
    ex = Execution("j", at("2026-01-01T12:04:00"), 1, "a", Status.SUCCEEDED)
    store.create(EXECUTIONS, ex.id, ex.to_doc())
    leader, _, _ = make_leader(store, ["a"], clock=lambda: at("2026-01-01T12:05:30"))
    leader._load()
    assert leader.jobs["j"].pending is None and leader.jobs["j"].run is None


class CountingStore:
    """The store, counting each call by method and collection."""

    def __init__(self, store: SQLiteDocumentStore) -> None:
        self.inner = store
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kw: Any) -> Any:
            self.calls.append((name, str(args[0]) if args else ""))
            return method(*args, **kw)

        return call

    def count(self, name: str, collection: str) -> int:
        return self.calls.count((name, collection))


def test_lookback_asks_the_store_once_for_every_job(store: SQLiteDocumentStore) -> None:
    for i in range(30):
        add_job(store, f"j{i:02d}", "*/2 * * * *")
    for i in range(0, 30, 2):  # the even jobs ran 12:04 under a previous leader (some retried)
        for attempt in (1, 2) if i % 4 == 0 else (1,):
            ex = Execution(f"j{i:02d}", at("2026-01-01T12:04:00"), attempt, "a", Status.SUCCEEDED)
            store.create(EXECUTIONS, ex.id, ex.to_doc())
    old = Execution("j01", at("2026-01-01T12:00:00"), 1, "a", Status.SUCCEEDED)  # before the window
    store.create(EXECUTIONS, old.id, old.to_doc())
    counting: Any = CountingStore(store)
    leader = Leader(
        "L", counting, FakeElection(["a"]), FakeWorkers(store), clock=lambda: at("2026-01-01T12:05:30")
    )
    leader._load()
    for i in range(30):
        run = leader.jobs[f"j{i:02d}"].run
        if i % 2:
            assert run is not None and run.fire_time == at("2026-01-01T12:04:00") and run.attempt == 1
        else:
            assert run is None  # already ran: not again
    assert counting.count("get", EXECUTIONS) == 0
    assert counting.count("find", EXECUTIONS) == 2  # the runs in progress, and the lookback window


def test_fire_times_since_holds_first_attempts_from_the_instant_on(store: SQLiteDocumentStore) -> None:
    since = at("2026-01-01T12:00:00.500000")
    for job, fire, attempt in (
        ("a", "2026-01-01T11:59:59.900000", 1),  # before, in the same whole second as the bound
        ("b", "2026-01-01T12:00:00", 1),  # before, by half a second
        ("c", "2026-01-01T12:00:00.500000", 1),  # the instant itself
        ("d", "2026-01-01T12:00:00.750000", 1),
        ("e", "2026-01-01T12:04:00", 2),  # not a first attempt
        ("f", "2026-01-01T12:04:00", 1),
        ("g", "2026-01-01T12:09:00", 1),  # sent ahead: after now too
        ("h", "2025-12-31T12:04:00", 1),
    ):
        ex = Execution(job, at(fire), attempt, "n", Status.RUNNING)
        store.create(EXECUTIONS, ex.id, ex.to_doc())
    assert Records(store).fire_times_since(since) == {
        ("c", at("2026-01-01T12:00:00.500000")),
        ("d", at("2026-01-01T12:00:00.750000")),
        ("f", at("2026-01-01T12:04:00")),
        ("g", at("2026-01-01T12:09:00")),
    }


def test_all_enabled_jobs_reads_pages_and_shares_repeated_strings(store: SQLiteDocumentStore) -> None:
    for i in range(7):
        add_job(store, f"p{i}", "*/2 * * * *", enabled=i != 3, tz="Europe/Paris")
    counting: Any = CountingStore(store)
    jobs = Records(counting).all_enabled_jobs(page=2)
    assert [j.name for j in jobs] == ["p0", "p1", "p2", "p4", "p5", "p6"]
    assert jobs == [Job.from_doc(store.get(JOBS, j.name)) for j in jobs]
    assert counting.count("find", JOBS) == 4  # 2 + 2 + 2 + 0
    assert all(j.schedule is jobs[0].schedule and j.tz is jobs[0].tz for j in jobs)


def test_disabled_jobs_are_not_scheduled(store: SQLiteDocumentStore) -> None:
    add_job(store, "off", "* * * * *", enabled=False)
    leader, _, _ = make_leader(store, ["a"], clock=lambda: at("2026-01-01T12:05:30"))
    leader._load()
    assert "off" not in leader.jobs


def test_a_run_in_progress_is_known_after_election(store: SQLiteDocumentStore) -> None:
    add_job(store, "j", "*/2 * * * *")
    ex = Execution("j", at("2026-01-01T12:02:00"), 1, "a", Status.RUNNING)
    store.create(EXECUTIONS, ex.id, ex.to_doc())
    leader, _, _ = make_leader(store, ["a"], clock=lambda: at("2026-01-01T12:05:30"))
    leader._load()
    js = leader.jobs["j"]
    assert js.run is not None and js.run.node == "a" and js.run.fire_time == at("2026-01-01T12:02:00")
    # The missed 12:04 waits for the run in progress (no overlap).
    assert js.pending == (at("2026-01-01T12:04:00"), False)


# -- live loop (real clock, second-level schedules) ---------------------------------------------------


@pytest.fixture
def running() -> Iterator[list[Leader]]:
    leaders: list[Leader] = []
    yield leaders
    for leader in leaders:
        leader.stop()


def test_round_robin_over_workers(store: SQLiteDocumentStore, running: list[Leader]) -> None:
    for i in range(6):
        add_job(store, f"j{i}", "* * * * * *")
    leader, _, workers = make_leader(store, ["a", "b", "c"])
    running.append(leader)
    leader.start()
    assert wait_for(lambda: len(workers.dispatched) >= 6)
    nodes = [n for n, _ in workers.dispatched[:6]]
    assert sorted(nodes) == ["a", "a", "b", "b", "c", "c"]


def test_busy_worker_declines_and_the_next_is_tried(
    store: SQLiteDocumentStore, running: list[Leader]
) -> None:
    add_job(store, "j", "* * * * * *")
    leader, _, workers = make_leader(store, ["a", "b"])
    workers.busy = {"a"}
    workers.down = {"b"}
    running.append(leader)
    leader.start()
    time.sleep(1.5)
    assert workers.dispatched == []  # everyone declined or is down: the run waits
    workers.busy.clear()
    assert wait_for(lambda: len(workers.dispatched) >= 1)
    assert workers.dispatched[0][0] == "a"


def test_no_overlap_then_one_catch_up_run(store: SQLiteDocumentStore, running: list[Leader]) -> None:
    add_job(store, "slow", "* * * * * *")
    leader, _, workers = make_leader(store, ["a"])
    running.append(leader)
    leader.start()
    assert wait_for(lambda: len(workers.dispatched) == 1)
    first = workers.ids()[0]
    time.sleep(2.5)  # two or three fire times pass while the first run is in progress
    assert workers.ids() == [first]
    finish(store, first, Status.SUCCEEDED)
    assert wait_for(lambda: len(workers.dispatched) == 2, 3.0)
    second = workers.ids()[1]
    # The catch-up run is the newest fire time that passed, and only one ran.
    first_fire = Execution.from_doc(store.get(EXECUTIONS, first)).fire_time
    second_fire = Execution.from_doc(store.get(EXECUTIONS, second)).fire_time
    assert second_fire - first_fire >= timedelta(seconds=2)
    time.sleep(0.3)
    assert len(workers.dispatched) == 2


def test_timeout_retries_on_other_workers_up_to_max_attempts(
    store: SQLiteDocumentStore, running: list[Leader]
) -> None:
    add_job(store, "t", "0 0 1 1 *", max_attempts=3)
    leader, _, workers = make_leader(store, ["a", "b", "c"])
    running.append(leader)
    leader.start()
    assert leader.ready.wait(5)
    job = Job.from_doc(store.get(JOBS, "t"))
    leader.run_now(job)
    for attempt in (1, 2, 3):
        assert wait_for(lambda attempt=attempt: len(workers.dispatched) == attempt)  # type: ignore[misc]
        _node, exec_id = workers.dispatched[-1]
        assert exec_id.endswith(f"#{attempt}")
        finish(store, exec_id, Status.TIMEOUT, None)
    time.sleep(0.5)
    assert len(workers.dispatched) == 3
    assert sorted(n for n, _ in workers.dispatched) == ["a", "b", "c"]  # never the same node twice


def test_run_on_a_dead_worker_is_marked_lost_and_retried_elsewhere(
    store: SQLiteDocumentStore, running: list[Leader]
) -> None:
    add_job(store, "l", "0 0 1 1 *")
    leader, election, workers = make_leader(store, ["a", "b"])
    running.append(leader)
    leader.start()
    assert leader.ready.wait(5)
    leader.run_now(Job.from_doc(store.get(JOBS, "l")))
    assert wait_for(lambda: len(workers.dispatched) == 1)
    dead, exec_id = workers.dispatched[0]
    election.nodes.remove(dead)
    assert wait_for(lambda: len(workers.dispatched) == 2, 4.0)
    assert store.get(EXECUTIONS, exec_id)["status"] == "lost"
    node2, exec2 = workers.dispatched[1]
    assert node2 != dead and exec2.endswith("#2")


def test_second_leader_adopts_instead_of_running_twice(
    store: SQLiteDocumentStore, running: list[Leader]
) -> None:
    add_job(store, "d", "*/2 * * * *")
    now = utcnow()
    leader, _, workers = make_leader(store, ["a"], clock=lambda: now)
    # An old leader already dispatched the newest fire time within the lookback window.
    from libdcron.schedule import parse_schedule

    newest = parse_schedule("*/2 * * * *").newest_at_or_before(now, now - timedelta(minutes=5))
    assert newest is not None
    ex = Execution("d", newest, 1, "a", Status.RUNNING)
    store.create(EXECUTIONS, ex.id, ex.to_doc())
    running.append(leader)
    leader.start()
    assert leader.ready.wait(5)
    time.sleep(0.3)
    assert workers.dispatched == []
    assert leader.jobs["d"].run is not None
    assert leader.jobs["d"].run.exec_id("d") == execution_id("d", newest, 1)  # type: ignore[union-attr]


def test_job_changes_reach_the_leader_through_the_feed(
    store: SQLiteDocumentStore, running: list[Leader]
) -> None:
    leader, _, workers = make_leader(store, ["a"])
    running.append(leader)
    leader.start()
    assert leader.ready.wait(5)
    add_job(store, "late", "* * * * * *")
    assert wait_for(lambda: len(workers.dispatched) >= 1, 3.0)
    doc = store.get(JOBS, "late")
    store.update(
        JOBS,
        "late",
        {**{k: v for k, v in doc.items() if not k.startswith("_")}, "enabled": False},
        doc["_rev"],
    )
    for _, exec_id in list(workers.dispatched):
        finish(store, exec_id, Status.SUCCEEDED)
    assert wait_for(lambda: "late" not in leader.jobs, 3.0)
    count = len(workers.dispatched)
    time.sleep(1.5)
    assert len(workers.dispatched) == count


def set_enabled(store: SQLiteDocumentStore, name: str, enabled: bool) -> None:
    doc = store.get(JOBS, name)
    body = {k: v for k, v in doc.items() if not k.startswith("_")}
    store.update(JOBS, name, {**body, "enabled": enabled}, doc["_rev"])


def test_disable_then_enable_does_not_fire_a_time_twice(
    store: SQLiteDocumentStore, running: list[Leader]
) -> None:
    add_job(store, "flip", "*/3 * * * * *")
    leader, _, workers = make_leader(store, ["a"])
    running.append(leader)
    leader.start()
    assert wait_for(lambda: len(workers.dispatched) >= 1)

    def finish_all_and_dropped() -> bool:
        for _, exec_id in list(workers.dispatched):
            if store.get(EXECUTIONS, exec_id)["status"] == "running":
                finish(store, exec_id, Status.SUCCEEDED)
        return "flip" not in leader.jobs

    for _ in range(3):
        set_enabled(store, "flip", False)
        assert wait_for(finish_all_and_dropped, 3.0)
        set_enabled(store, "flip", True)  # before the old heap entry of the job comes due
        time.sleep(1.5)
    time.sleep(1.0)
    ids = workers.ids()
    assert len(ids) == len(set(ids))
    assert workers.requests == len(ids), "a fire time was dispatched twice"


# -- adopt, suspension, missed completions (threads, fake workers, no fixed sleeps) --------------

FIXED = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)  # no fire time of "0 0 1 1 *" within lookback


def started_leader(
    store: SQLiteDocumentStore, nodes: list[str], running: list[Leader], **kw: Any
) -> tuple[Leader, FakeElection, FakeWorkers]:
    leader, election, workers = make_leader(store, nodes, **kw)
    running.append(leader)
    leader.start()
    assert leader.ready.wait(5)
    return leader, election, workers


def test_a_duplicate_reply_makes_the_leader_follow_the_existing_attempt(
    store: SQLiteDocumentStore, running: list[Leader]
) -> None:
    job = add_job(store, "dup", "0 0 1 1 *")
    leader, _, workers = started_leader(store, ["a", "b"], running, clock=lambda: FIXED)
    # Meanwhile (after this leader loaded the runs in progress) another leader dispatched the
    # same attempt to b: every worker answers `duplicate`.
    other = Execution("dup", FIXED, 1, "b", Status.RUNNING, started=FIXED)
    store.create(EXECUTIONS, other.id, other.to_doc())
    leader.run_now(job)
    assert wait_for(lambda: (r := leader.jobs["dup"].run) is not None and r.node == "b")
    assert workers.dispatched == [] and workers.requests == 1
    # b's FINISHED goes to the leader it knows; this one sees the completion in the store.
    finish(store, other.id, Status.SUCCEEDED)
    assert wait_for(lambda: leader.jobs["dup"].run is None)
    assert workers.dispatched == [] and workers.requests == 1


def test_a_duplicate_of_an_attempt_already_ended_finishes_it_and_goes_on(
    store: SQLiteDocumentStore, running: list[Leader]
) -> None:
    job = add_job(store, "gone", "0 0 1 1 *", max_attempts=2)
    other = Execution("gone", FIXED, 1, "b", Status.TIMEOUT, started=FIXED, ended=FIXED)
    store.create(EXECUTIONS, other.id, other.to_doc())
    leader, _, workers = started_leader(store, ["a", "b"], running, clock=lambda: FIXED)
    leader.run_now(job)
    # Adopted, found terminal (timeout): the next attempt runs, on another node than b.
    assert wait_for(lambda: len(workers.dispatched) == 1)
    assert workers.dispatched == [("a", execution_id("gone", FIXED, 2))]
    finish(store, execution_id("gone", FIXED, 2), Status.SUCCEEDED)
    assert wait_for(lambda: leader.jobs["gone"].run is None)


class CountingElection(FakeElection):
    """Counts the leader's questions while suspended."""

    def __init__(self, nodes: list[str]) -> None:
        super().__init__(nodes)
        self.asked_while_suspended = 0

    def suspended(self) -> bool:
        if self.is_suspended:
            self.asked_while_suspended += 1
        return self.is_suspended


def test_nothing_is_dispatched_while_the_election_is_suspended(
    store: SQLiteDocumentStore, running: list[Leader]
) -> None:
    job = add_job(store, "s", "0 0 1 1 *")
    election = CountingElection(["a"])
    election.is_suspended = True
    workers = FakeWorkers(store)
    leader = Leader("L", store, election, workers, feed_interval=0.05)
    running.append(leader)
    leader.start()
    assert leader.ready.wait(5)
    leader.run_now(job)
    # A suspended leader holds the run and asks again every 0.5 s: let it ask three times.
    assert wait_for(lambda: election.asked_while_suspended >= 3)
    assert workers.requests == 0
    run = leader.jobs["s"].run
    assert run is not None and run.node is None
    election.is_suspended = False
    assert wait_for(lambda: len(workers.dispatched) == 1)
    assert workers.requests == 1 and run.node == "a"


class LossyFeedStore(SQLiteDocumentStore):
    """A store whose change feed never reports executions (the completion is missed)."""

    def changes(self, since: str | None, limit: int = 1000) -> tuple[list[Change], str]:
        found, last = super().changes(since, limit)
        return [c for c in found if c.collection != EXECUTIONS], last


@pytest.fixture
def lossy_store(tmp_path: Path) -> Iterator[LossyFeedStore]:
    s = LossyFeedStore(str(tmp_path / "lossy.sqlite3"))
    s.open()
    yield s
    s.close()


def test_a_missed_completion_is_read_back_from_the_store(
    lossy_store: LossyFeedStore, running: list[Leader]
) -> None:
    store = lossy_store
    job = add_job(store, "m", "0 0 1 1 *", max_attempts=2)
    leader, _, workers = started_leader(store, ["a"], running)
    leader.run_now(job)
    assert wait_for(lambda: len(workers.dispatched) == 1)
    first = workers.ids()[0]
    run = leader.jobs["m"].run
    assert run is not None and wait_for(lambda: run.node == "a")
    # The worker's FINISHED is lost and so is the feed's change: only the store knows.
    finish(store, first, Status.TIMEOUT, None)
    time.sleep(0.3)
    assert leader.jobs["m"].run is run
    run.since -= 60  # accepted long ago: the once-a-second check reads it back
    assert wait_for(lambda: len(workers.dispatched) == 2, 3.0)  # and the leader goes on (retry)
    assert workers.ids()[1] == first.replace("#1", "#2")
    second = leader.jobs["m"].run
    assert second is not None and wait_for(lambda: second.node == "a")
    finish(store, workers.ids()[1], Status.SUCCEEDED)
    second.since -= 60
    assert wait_for(lambda: leader.jobs["m"].run is None, 3.0)
    assert len(workers.dispatched) == 2


def test_list_jobs_by_state_reads_at_most_scan_jobs_a_page(store: SQLiteDocumentStore) -> None:
    """A page by state compares the state of at most ``scan`` jobs: with a rare state, short (even
    empty) pages whose cursor goes on, and no page reads every job; walking them finds each once."""
    names = [f"j{i:02d}" for i in range(20)]
    for i, name in enumerate(names):
        add_job(store, name, "*/2 * * * *", enabled=i not in (7, 8, 15))
    counting: Any = CountingStore(store)
    records = Records(counting)
    page, cursor = records.list_jobs(10, enabled=False, scan=5)
    assert page == [] and cursor == "j04"  # five read, none disabled
    page, cursor = records.list_jobs(10, after=cursor, enabled=False, scan=5)
    assert [j.name for j in page] == ["j07", "j08"] and cursor == "j09"
    walked: list[str] = []
    cursor = None
    while True:
        page, cursor = records.list_jobs(2, after=cursor, enabled=False, scan=5)
        walked += [j.name for j in page]
        if cursor is None:
            break
    assert walked == ["j07", "j08", "j15"]
    everything, last = records.list_jobs(20, scan=5)  # no state: full pages, whatever the scan
    assert [j.name for j in everything] == names and last is None
    page, cursor = records.list_jobs(3, enabled=True, scan=5)
    assert [j.name for j in page] == ["j00", "j01", "j02"] and cursor == "j02"
