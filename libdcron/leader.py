"""The leader loop: keeps every enabled job's next fire instant and dispatches due runs.

Only the elected node runs a :class:`Leader`.  Its state lives in memory and is rebuilt from the
document store each time it is elected; nothing in it needs to survive a crash, because the store
holds what matters (jobs, and one execution document per attempt with a deterministic id).

- **Event-driven**: a heap holds ``(next fire instant, job)`` for every enabled job; the loop sleeps
  until the earliest one is to be sent or until a job or execution changes.  No job is
  looked at until it is due.
- **No overlap**: while a run of a job is in progress, newer fire times of that job wait in
  ``pending`` (only the newest is kept) and run once when the current run ends.
- **Lookback**: when elected, a job whose newest fire time lies within :attr:`lookback` seconds and
  has no execution yet runs once; older fire times are never run.
- **Retries**: a ``timeout`` or ``lost`` attempt is retried on another live worker (the same one
  if it is alone), up to the job's ``max_attempts``.
- **Dispatch**: round-robin over live members; a busy worker declines and the next is tried;
  when all decline the run waits and is tried again shortly, never dropped.
- **Failover**: the execution id of an attempt is deterministic, so a new leader dispatching a fire
  time the old one already dispatched gets a conflict (``duplicate``) instead of a second run.

Changes reach the leader through the document store's change feed (:meth:`DocumentStore.changes`),
polled every :attr:`feed_interval` seconds: a job written through any node, an execution completed
by any worker.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .abc import EXECUTIONS, JOBS, DocumentStore, Election, Member, Transport
from .backoff import Backoff
from .errors import DcronError, NotFoundError, UnavailableError
from .model import Execution, Job, Status, execution_id, format_instant, utcnow
from .records import Records
from .schedule import Schedule, parse_schedule
from .transport.messages import Dispatch, DispatchReply

log = logging.getLogger(__name__)

LOOKBACK = 300.0
FEED_BATCH = 1000


@dataclass
class Run:
    """An attempt the leader has started and not yet seen end."""

    fire_time: datetime
    attempt: int
    manual: bool = False
    node: str | None = None  # None while dispatching
    incarnation: str | None = None  # of the worker process running it
    tried: set[str] = field(default_factory=set)
    since: float = field(default_factory=time.monotonic)
    #: A FINISHED that arrived before the worker's DISPATCH reply (a very short run).
    early: Execution | None = None

    def exec_id(self, job: str) -> str:
        return execution_id(job, self.fire_time, self.attempt)


@dataclass
class JobState:
    job: Job
    schedule: Schedule | None
    generation: int = 0  # bumped when the job changes; stale heap entries are skipped
    next_fire: datetime | None = None
    following: datetime | None = None  # the fire time after next_fire, for its lead
    run: Run | None = None
    pending: tuple[datetime, bool] | None = None  # (fire time, manual) waiting for the run to end


class Leader:
    def __init__(
        self,
        node_id: str,
        store: DocumentStore,
        election: Election,
        transport: Transport,
        lookback: float = LOOKBACK,
        lead: float = 5.0,
        feed_interval: float = 0.25,
        dispatch_threads: int = 16,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.records = Records(store)
        self.election = election
        self.transport = transport
        self.lookback = lookback
        self.lead = lead
        self.feed_interval = feed_interval
        self.clock = clock
        self.jobs: dict[str, JobState] = {}
        #: (send instant, seq, job, generation, fire instant): a run is sent ahead of its fire time.
        self._heap: list[tuple[datetime, int, str, int, datetime]] = []
        self._retry: list[tuple[float, int, str]] = []  # (monotonic time, seq, job) dispatch retries
        self._seq = itertools.count()
        self._generations = itertools.count(1)  # global, so a re-created JobState never reuses one
        #: Newest scheduled fire time started per job; survives a disable/enable or an update, so
        #: a fire time already sent ahead (within ``lead``) is not sent again.
        self._last_fire: dict[str, datetime] = {}
        self._cond = threading.Condition()
        self._active = False
        self._rr = 0
        self._pool = ThreadPoolExecutor(max_workers=dispatch_threads, thread_name_prefix="dcron-dispatch")
        self._threads: list[threading.Thread] = []
        self._feed_since: str | None = None
        self.ready = threading.Event()

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            self._active = True
        for target, name in ((self._main, "dcron-leader"), (self._feed_loop, "dcron-leader-feed")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Step down: discard the in-memory schedule.  Runs in progress go on on their workers."""
        with self._cond:
            self._active = False
            self.jobs.clear()
            self._heap.clear()
            self._retry.clear()
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._threads.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def active(self) -> bool:
        return self._active

    # -- loading ---------------------------------------------------------------------------------

    def _load(self) -> None:
        """Rebuild the schedule from the store: jobs, runs in progress, lookback."""
        self._feed_since = self.store.changes(None)[1]
        jobs = self.records.enabled_jobs()
        running = self.records.running()
        now = self.clock()
        with self._cond:
            for job in jobs:
                self._upsert(job, now, initial=True)
            for ex in sorted(running, key=lambda e: (e.fire_time, e.attempt)):
                js = self.jobs.get(ex.job)
                if js is not None:
                    js.run = Run(
                        ex.fire_time,
                        ex.attempt,
                        ex.manual,
                        node=ex.node,
                        incarnation=ex.incarnation,
                        tried={ex.node},
                    )
                    if js.pending and js.pending[0] <= ex.fire_time:
                        js.pending = None
                    if not ex.manual:
                        self._last_fire[ex.job] = max(ex.fire_time, self._last_fire.get(ex.job, ex.fire_time))
                        if js.next_fire is not None and js.next_fire <= ex.fire_time:
                            js.generation = next(self._generations)
                            self._push(js, js.schedule.next_after(ex.fire_time))  # type: ignore[union-attr]
            for js in self.jobs.values():
                self._release(js)
            self._cond.notify_all()
        log.info("leader loaded %d enabled jobs, %d runs in progress", len(jobs), len(running))

    def _upsert(self, job: Job, now: datetime, initial: bool = False) -> None:
        """Add or replace a job's state (lock held)."""
        old = self.jobs.get(job.name)
        if not job.enabled:
            if old is not None:
                old.generation = next(self._generations)
                old.job = job
                old.next_fire = None
                old.pending = None
                if old.run is None:
                    del self.jobs[job.name]
            return
        try:
            schedule = parse_schedule(job.schedule, job.tz)
        except DcronError as exc:
            log.error(
                "job %s has an invalid schedule, ignoring it: %s", job.name, exc, extra={"job": job.name}
            )
            return
        if old is not None and old.job == job and old.next_fire is not None:
            return
        js = old or JobState(job, schedule)
        js.job, js.schedule = job, schedule
        js.generation = next(self._generations)
        if initial:
            self._lookback(js, now)
        self.jobs[job.name] = js
        self._push(js, schedule.next_after(max(now, self._last_fire.get(job.name, now))))

    def _lookback(self, js: JobState, now: datetime) -> None:
        """Queue the newest fire time within the lookback window if no attempt of it exists."""
        assert js.schedule is not None
        newest = js.schedule.newest_at_or_before(now, now - timedelta(seconds=self.lookback))
        if newest is None:
            return
        if self.records.attempt_exists(js.job.name, newest):
            return  # already ran (or runs) under a previous leader
        log.info("lookback: %s missed %s, running it now", js.job.name, format_instant(newest))
        js.pending = (newest, False)

    # -- the loop --------------------------------------------------------------------------------

    def _main(self) -> None:
        backoff = Backoff(0.5, 10.0)
        while self._active:
            try:
                self._load()
                break
            except DcronError as exc:
                delay = backoff.next()
                log.warning("leader cannot load the schedule yet, retrying in %.1fs: %s", delay, exc)
                with self._cond:
                    self._cond.wait(delay)
        self.ready.set()
        last_check = 0.0
        with self._cond:
            while self._active:
                now = self.clock()
                while self._heap and self._heap[0][0] <= now:
                    _, _, name, generation, fire = heapq.heappop(self._heap)
                    js = self.jobs.get(name)
                    if js is None or js.generation != generation or js.schedule is None:
                        continue
                    self._due(js, fire)
                mono = time.monotonic()
                while self._retry and self._retry[0][0] <= mono:
                    _, _, name = heapq.heappop(self._retry)
                    js = self.jobs.get(name)
                    if js is not None and js.run is not None and js.run.node is None:
                        self._pool.submit(self._dispatch, name, js.run)
                if mono - last_check >= 1.0:
                    last_check = mono
                    self._cond.release()
                    try:
                        self._check_runs()
                    finally:
                        self._cond.acquire()
                wait = 1.0
                if self._heap:
                    wait = min(wait, (self._heap[0][0] - now).total_seconds())
                if self._retry:
                    wait = min(wait, self._retry[0][0] - time.monotonic())
                if wait > 0:
                    self._cond.wait(wait)

    def _due(self, js: JobState, fire: datetime) -> None:
        """A fire time of ``js`` is due (lock held)."""
        assert js.schedule is not None
        following = js.following if js.following is not None else js.schedule.next_after(fire)
        self._push(js, following)
        if js.run is not None:
            log.info(
                "%s: run of %s still in progress, %s waits (no overlap)",
                js.job.name,
                format_instant(js.run.fire_time),
                format_instant(fire),
                extra={"job": js.job.name},
            )
            js.pending = (fire, False)
            return
        self._start(js, fire, 1, False)

    def _push(self, js: JobState, fire: datetime) -> None:
        """Make ``fire`` the job's next fire time; it is sent ahead by its lead (lock held).

        The lead is :attr:`lead` at most and half the gap to the following fire time at most, so a
        run sent ahead never waits behind the previous run of the same job.
        """
        assert js.schedule is not None
        js.next_fire = fire
        js.following = js.schedule.next_after(fire)
        lead = min(self.lead, (js.following - fire).total_seconds() / 2)
        send_at = fire - timedelta(seconds=lead)
        heapq.heappush(self._heap, (send_at, next(self._seq), js.job.name, js.generation, fire))

    def _release(self, js: JobState) -> None:
        """Start the run that waited for ``js`` to be free, if any (lock held)."""
        if js.pending is not None and js.run is None:
            fire, manual = js.pending
            js.pending = None
            self._start(js, fire, 1, manual)

    def _start(
        self, js: JobState, fire: datetime, attempt: int, manual: bool, tried: set[str] | None = None
    ) -> None:
        """Start dispatching one attempt (lock held)."""
        if not manual:
            self._last_fire[js.job.name] = max(fire, self._last_fire.get(js.job.name, fire))
        js.run = Run(fire, attempt, manual, tried=set(tried or ()))
        self._pool.submit(self._dispatch, js.job.name, js.run)

    # -- dispatch (pool threads) -------------------------------------------------------------------

    def _dispatch(self, name: str, run: Run) -> None:
        with self._cond:
            js = self.jobs.get(name)
            if not self._active or js is None or js.run is not run:
                return
            job = js.job
        if self.election.suspended():
            self._retry_later(name, 0.5)
            return
        members = self.election.members()
        if not members:
            self._retry_later(name, 1.0)
            return
        with self._cond:
            start = self._rr
            self._rr += 1
        ordered = [members[(start + i) % len(members)] for i in range(len(members))]
        fresh = [m for m in ordered if m.node_id not in run.tried]
        candidates = fresh or ordered  # the same worker again only when no other is left
        body = Dispatch(job, run.fire_time, run.attempt, self.node_id, run.manual).to_body()
        exec_id = run.exec_id(name)
        for member in candidates:
            try:
                reply = DispatchReply.from_body(
                    self.transport.request(member.endpoint, "DISPATCH", body, timeout=3.0, retries=0)
                )
            except UnavailableError as exc:
                log.warning("%s: worker %s unreachable: %s", exec_id, member.node_id, exc)
                continue
            except DcronError as exc:
                log.warning("%s: worker %s refused: %s", exec_id, member.node_id, exc)
                continue
            if reply.accepted:
                self._mark_running(name, run, member)
                return
            if reply.duplicate:
                self._adopt(name, run)
                return
        log.info("%s: every worker declined, retrying in 1s", exec_id, extra={"job": name})
        self._retry_later(name, 1.0)

    def _retry_later(self, name: str, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._retry, (time.monotonic() + delay, next(self._seq), name))
            self._cond.notify_all()

    def _mark_running(self, name: str, run: Run, member: Member) -> None:
        with self._cond:
            run.node = member.node_id
            run.incarnation = member.labels.get("incarnation")
            run.tried.add(member.node_id)
            run.since = time.monotonic()
            early, run.early = run.early, None
        log.info("dispatched %s to %s", run.exec_id(name), member.node_id, extra={"job": name})
        if early is not None and early.node == member.node_id:
            self.finished(early)

    def _adopt(self, name: str, run: Run) -> None:
        """Another leader's dispatch already started this attempt: follow it instead."""
        try:
            ex = self.records.execution(run.exec_id(name))
        except DcronError as exc:
            log.warning("cannot read %s: %s", run.exec_id(name), exc)
            self._retry_later(name, 1.0)
            return
        with self._cond:
            run.node = ex.node
            run.incarnation = ex.incarnation
            run.tried.add(ex.node)
        if ex.status.terminal:
            self._finished(ex)

    # -- completion --------------------------------------------------------------------------------

    def _finished(self, ex: Execution) -> None:
        with self._cond:
            js = self.jobs.get(ex.job)
            run = js.run if js is not None else None
            if js is None or run is None or run.fire_time != ex.fire_time or run.attempt != ex.attempt:
                return
            js.run = None
            if ex.status.retried and ex.attempt < js.job.max_attempts:
                log.info(
                    "%s ended %s; retrying (attempt %d of %d)",
                    ex.id,
                    ex.status.value,
                    ex.attempt + 1,
                    js.job.max_attempts,
                    extra={"job": ex.job},
                )
                self._start(js, ex.fire_time, ex.attempt + 1, ex.manual, tried=run.tried | {ex.node})
            elif js.pending is not None:
                self._release(js)
            elif not js.job.enabled:
                del self.jobs[ex.job]
            self._cond.notify_all()

    def finished(self, ex: Execution) -> None:
        """A worker reports that an attempt ended (FINISHED).

        Only the attempt in progress counts, and only from the node (and process) running it:
        duplicates, stale reports and reports from any other node are ignored.
        """
        if not ex.status.terminal:
            return
        with self._cond:
            js = self.jobs.get(ex.job)
            run = js.run if js is not None else None
            if run is None or run.fire_time != ex.fire_time or run.attempt != ex.attempt:
                return
            if run.node is None:  # the DISPATCH reply is not processed yet; _mark_running checks the node
                run.early = ex
                return
            if ex.node != run.node or (run.incarnation and ex.incarnation != run.incarnation):
                log.warning(
                    "ignored FINISHED of %s from %s: it runs on %s",
                    ex.id,
                    ex.node,
                    run.node,
                    extra={"job": ex.job, "execution": ex.id},
                )
                return
        self._finished(ex)

    def _check_runs(self) -> None:
        """Once a second: runs on dead workers become ``lost``; missed completions are read back."""
        members = self.election.members()
        live_nodes = {m.node_id for m in members}
        live = {(m.node_id, m.labels.get("incarnation")) for m in members}
        with self._cond:
            runs = [(name, js.run) for name, js in self.jobs.items() if js.run is not None and js.run.node]
        now = time.monotonic()
        for name, run in runs:
            alive = (run.node, run.incarnation) in live if run.incarnation else run.node in live_nodes
            if not alive:
                self._mark_lost(name, run)
            elif now - run.since > 5.0:
                run.since = now  # re-read at most every 5 s per run
                try:
                    ex = self.records.execution(run.exec_id(name))
                except DcronError:
                    continue
                if ex.status.terminal:
                    self._finished(ex)

    def _mark_lost(self, name: str, run: Run) -> None:
        exec_id = run.exec_id(name)
        restarted = run.node in {m.node_id for m in self.election.members()}
        reason = f"worker {run.node} {'restarted' if restarted else 'left the cluster'} mid-run"
        lost = Execution(
            job=name,
            fire_time=run.fire_time,
            attempt=run.attempt,
            node=run.node or "",
            status=Status.LOST,
            ended=utcnow(),
            reason=reason,
            manual=run.manual,
        )
        try:
            ended = self.records.mark_lost(lost)
        except DcronError as exc:  # conflicts included: the next check looks again
            log.warning("cannot mark %s lost yet: %s", exec_id, exc)
            return
        if ended is None:
            return
        if ended.status is Status.LOST and ended.reason == reason:
            log.warning("%s: %s", exec_id, reason, extra={"job": name, "execution": exec_id})
        self._finished(ended)

    # -- change feed -------------------------------------------------------------------------------

    def _feed_loop(self) -> None:
        while not self.ready.wait(0.2):
            if not self._active:
                return
        while self._active:
            try:
                changes, since = self.store.changes(self._feed_since, limit=FEED_BATCH)
                self._feed_since = since
                for change in changes:
                    self._on_change(change.collection, change.doc_id)
            except DcronError as exc:
                log.warning("change feed unavailable: %s", exc)
                time.sleep(1.0)
                continue
            if len(changes) < FEED_BATCH:
                time.sleep(self.feed_interval)

    def _on_change(self, collection: str, doc_id: str) -> None:
        if collection == EXECUTIONS and not self._tracking(doc_id):
            return  # _finished would ignore it: spare the store a read (one per run otherwise)
        try:
            if collection == JOBS:
                job = self.records.job(doc_id)
                with self._cond:
                    self._upsert(job, self.clock())
                    self._cond.notify_all()
            elif collection == EXECUTIONS:
                ex = self.records.execution(doc_id)
                if ex.status.terminal:
                    self._finished(ex)
        except NotFoundError:
            return

    def _tracking(self, exec_id: str) -> bool:
        """Whether ``exec_id`` (``JOB@FIRE_TIME#ATTEMPT``) is the attempt in progress of its job.

        Most execution changes are of attempts already known to have ended (the worker reports
        FINISHED directly), which :meth:`_finished` would ignore anyway.
        """
        name = exec_id.partition("@")[0]  # job names hold no '@'
        with self._cond:
            js = self.jobs.get(name)
            return js is not None and js.run is not None and js.run.exec_id(name) == exec_id

    # -- manual runs -------------------------------------------------------------------------------

    def run_now(self, job: Job) -> dict[str, object]:
        fire = self.clock()
        with self._cond:
            js = self.jobs.get(job.name)
            if js is None:
                js = JobState(job, None)
                self.jobs[job.name] = js
            if js.run is not None:
                js.pending = (fire, True)
                return {"queued": True, "fire_time": format_instant(fire)}
            self._start(js, fire, 1, True)
            self._cond.notify_all()
        return {
            "queued": False,
            "fire_time": format_instant(fire),
            "execution": execution_id(job.name, fire, 1),
        }
