"""The :class:`Leader`: threads, dispatch to workers, recovery from the store, the change feed.

Every scheduling decision is :class:`~libdcron.leader.state.LeaderState`'s; this module feeds it
events (under :attr:`Leader._cond`) and carries out the :class:`Start` decisions it returns.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from ..abc import EXECUTIONS, JOBS, DocumentStore, Election, Member, Transport
from ..backoff import Backoff
from ..errors import DcronError, NotFoundError, UnavailableError
from ..metrics import Metrics
from ..model import Execution, Job, Status, execution_id, format_instant, utcnow
from ..records import Records
from ..transport.messages import MAX_DISPATCH_RUNS, Dispatch, DispatchBatch, DispatchReply
from .state import LOOKBACK, JobState, LeaderState, Run, Start

log = logging.getLogger(__name__)

FEED_BATCH = 1000
#: Seconds after which a run a worker accepted is read back from the store (a missed completion).
RECHECK = 5.0
#: A change of the attempt in progress is read this long after the change, and no earlier than
#: this long after its fire time: by then the worker's FINISHED has usually ended the attempt and
#: the read is spared (a run's insert is a change too: one read per run otherwise).
FEED_DEFER = 1.0


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
        local_worker: Callable[[list[Dispatch]], list[DispatchReply]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.node_id = node_id
        #: Where this leader counts (its node's, or a private one).
        self.metrics = metrics or Metrics()
        #: This node's own worker, called directly instead of through the transport (no
        #: encoding, no socket) when a run goes to this node.
        self.local_worker = local_worker
        self.store = store
        self.records = Records(store)
        self.election = election
        self.transport = transport
        self.feed_interval = feed_interval
        self.clock = clock
        self.state = LeaderState(lookback, lead)
        self._retry: list[tuple[float, int, str]] = []  # (monotonic time, seq, job) dispatch retries
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._active = False
        self._rr = 0
        self._pool = ThreadPoolExecutor(max_workers=dispatch_threads, thread_name_prefix="dcron-dispatch")
        self._threads: list[threading.Thread] = []
        self._feed_since: str | None = None
        #: Execution changes to read later: (monotonic due time, execution id), see FEED_DEFER.
        self._deferred: list[tuple[float, str]] = []
        #: Attempts to dispatch, queued by :meth:`_submit`; the dispatcher sends them in batches.
        self._outgoing: list[tuple[str, Run]] = []
        self._outgoing_ready = threading.Event()
        self.ready = threading.Event()

    @property
    def jobs(self) -> dict[str, JobState]:
        """Every job the leader follows, by name (the state's own dict)."""
        return self.state.jobs

    @property
    def lookback(self) -> float:
        return self.state.lookback

    @property
    def lead(self) -> float:
        return self.state.lead

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            self._active = True
        threads = (
            (self._main, "dcron-leader"),
            (self._feed_loop, "dcron-leader-feed"),
            (self._dispatch_loop, "dcron-leader-dispatch"),
        )
        for target, name in threads:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Step down: discard the in-memory schedule.  Runs in progress go on on their workers."""
        with self._cond:
            self._active = False
            self.state.clear()
            self._retry.clear()
            self._outgoing.clear()
            self._outgoing_ready.set()
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._threads.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def active(self) -> bool:
        return self._active

    def _submit(self, starts: Iterable[Start]) -> None:
        """Carry out the state's decisions: queue each started attempt for dispatch (lock held)."""
        before = len(self._outgoing)
        for start in starts:
            self._outgoing.append((start.job, start.run))
            if start.run.attempt > 1:  # a retry after a timeout or a lost run
                self.metrics.retries.inc()
        if len(self._outgoing) > before:
            self._outgoing_ready.set()

    # -- loading ---------------------------------------------------------------------------------

    def _load(self) -> None:
        """Rebuild the schedule from the store: jobs, runs in progress, lookback.

        Three reads, whatever the number of jobs: the enabled jobs (in pages), the runs in
        progress, and the attempts within the lookback window (one query, not one per job): a
        fire time with an attempt is not run again, but a last attempt that ended ``lost`` or
        ``timeout`` unretried (its leader stopped first) is retried.
        """
        self._feed_since = self.store.changes(None)[1]
        jobs = self.records.all_enabled_jobs()
        running = self.records.running()
        now = self.clock()
        ran = self.records.newest_attempts_since(now - timedelta(seconds=self.state.lookback))
        unretried = [ex for ex in ran.values() if ex.status.retried]

        def attempt_exists(name: str, fire: datetime) -> bool:
            return (name, fire) in ran

        with self._cond:
            self._submit(self.state.load(jobs, running, now, attempt_exists, unretried))
            self._cond.notify_all()
        log.info("leader loaded %d enabled jobs, %d runs in progress", len(jobs), len(running))

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
                self._submit(self.state.advance(now))
                if self.state.skipped:
                    self.metrics.skipped_fire_times.inc(self.state.skipped)
                    self.state.skipped = 0
                mono = time.monotonic()
                while self._retry and self._retry[0][0] <= mono:
                    _, _, name = heapq.heappop(self._retry)
                    run = self.state.undispatched(name)
                    if run is not None:
                        self._outgoing.append((name, run))
                        self._outgoing_ready.set()
                if mono - last_check >= 1.0:
                    last_check = mono
                    self._cond.release()
                    try:
                        self._check_runs()
                    finally:
                        self._cond.acquire()
                wait = 1.0
                send = self.state.next_send()
                if send is not None:
                    wait = min(wait, (send - now).total_seconds())
                if self._retry:
                    wait = min(wait, self._retry[0][0] - time.monotonic())
                if wait > 0:
                    self._cond.wait(wait)

    # -- dispatch (the dispatcher thread; requests on pool threads) --------------------------------

    def _dispatch_loop(self) -> None:
        while self._active:
            self._outgoing_ready.wait(1.0)
            with self._cond:
                items, self._outgoing = self._outgoing, []
                self._outgoing_ready.clear()
            if items and self._active:
                try:
                    self._dispatch(items)
                except Exception:  # never lose the dispatcher: the runs are retried
                    log.exception("dispatching %d runs failed; retrying them in 1s", len(items))
                    for name, _ in items:
                        self._retry_later(name, 1.0)

    def _dispatch(self, items: list[tuple[str, Run]]) -> None:
        """Send attempts to workers: one DISPATCH per worker carrying its share, round-robin.

        A run a worker declines (busy, stopping, unreachable) goes to the next worker in the next
        round, a worker that already ran an attempt of its fire time only when no other is left;
        when every worker declined it, it is retried a second later.
        """
        with self._cond:
            if not self._active:
                return
            live = [(name, run, job) for name, run in items if (job := self.state.current(name, run)) is not None]
        if not live:
            return
        if self.election.suspended():
            for name, _, _ in live:
                self._retry_later(name, 0.5)
            return
        members = self.election.members()
        if not members:
            for name, _, _ in live:
                self._retry_later(name, 1.0)
            return
        declined: dict[int, set[str]] = {}
        pending = list(live)
        while pending and self._active:
            groups: dict[str, tuple[Member, list[tuple[str, Run, Job]]]] = {}
            for item in pending:
                name, run, _ = item
                start, self._rr = self._rr, self._rr + 1
                ordered = [members[(start + i) % len(members)] for i in range(len(members))]
                left = [m for m in ordered if m.node_id not in declined.get(id(run), ())]
                fresh = [m for m in left if m.node_id not in run.tried]
                candidates = fresh or left  # the same worker again only when no other is left
                if not candidates:
                    log.info("%s: every worker declined, retrying in 1s", run.exec_id(name), extra={"job": name})
                    self._retry_later(name, 1.0)
                    continue
                groups.setdefault(candidates[0].node_id, (candidates[0], []))[1].append(item)
            futures = [(member, group, self._pool.submit(self._send, member, group)) for member, group in groups.values()]
            pending = []
            for member, group, future in futures:
                replies = future.result()
                for (name, run, job), reply in zip(group, replies, strict=True):
                    if reply.accepted:
                        self._mark_running(name, run, member)
                    elif reply.duplicate:
                        self._adopt(name, run)
                    else:
                        self.metrics.declined(reply.reason)
                        declined.setdefault(id(run), set()).add(member.node_id)
                        pending.append((name, run, job))

    def _send(self, member: Member, group: list[tuple[str, Run, Job]]) -> list[DispatchReply]:
        """One DISPATCH (per :data:`MAX_DISPATCH_RUNS` runs) to ``member``; a reply per run."""
        replies: list[DispatchReply] = []
        for at in range(0, len(group), MAX_DISPATCH_RUNS):
            chunk = group[at : at + MAX_DISPATCH_RUNS]
            runs = [Dispatch(job, run.fire_time, run.attempt, self.node_id, run.manual) for _, run, job in chunk]
            if self.local_worker is not None and member.node_id == self.node_id:
                replies += self.local_worker(runs)
                continue
            try:
                answer = self.transport.request(
                    member.endpoint, "DISPATCH", DispatchBatch.of(self.node_id, runs), timeout=3.0, retries=0
                )
            except UnavailableError as exc:
                log.warning("worker %s unreachable for %d runs: %s", member.node_id, len(chunk), exc)
                replies += [DispatchReply(False, reason="unreachable")] * len(chunk)
                continue
            except DcronError as exc:
                log.warning("worker %s refused %d runs: %s", member.node_id, len(chunk), exc)
                replies += [DispatchReply(False, reason="refused")] * len(chunk)
                continue
            for (name, run, _), reply in zip(chunk, DispatchBatch.replies(answer, len(chunk)), strict=True):
                if not reply.accepted and reply.reason and reply.reason.startswith("refused"):
                    log.warning("%s: worker %s %s", run.exec_id(name), member.node_id, reply.reason)
                replies.append(reply)
        return replies

    def _retry_later(self, name: str, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._retry, (time.monotonic() + delay, next(self._seq), name))
            self._cond.notify_all()

    def _mark_running(self, name: str, run: Run, member: Member) -> None:
        with self._cond:
            self._submit(self.state.accepted(name, run, member.node_id, member.labels.get("incarnation")))
            self._cond.notify_all()
        log.info("dispatched %s to %s", run.exec_id(name), member.node_id, extra={"job": name})

    def _adopt(self, name: str, run: Run) -> None:
        """Another leader's dispatch already started this attempt: follow it instead."""
        try:
            ex = self.records.execution(run.exec_id(name))
        except DcronError as exc:
            log.warning("cannot read %s: %s", run.exec_id(name), exc)
            self._retry_later(name, 1.0)
            return
        with self._cond:
            self._submit(self.state.adopted(name, run, ex))
            self._cond.notify_all()

    # -- completion --------------------------------------------------------------------------------

    def _finished(self, ex: Execution) -> None:
        """An attempt ended, as the store says."""
        with self._cond:
            self._submit(self.state.ended(ex))
            self._cond.notify_all()

    def finished(self, ex: Execution) -> None:
        """A worker reports that an attempt ended (FINISHED).

        Only the attempt in progress counts, and only from the node (and process) running it:
        duplicates, stale reports and reports from any other node are ignored.
        """
        with self._cond:
            self._submit(self.state.reported(ex))
            self._cond.notify_all()

    def _check_runs(self) -> None:
        """Once a second: runs on dead workers become ``lost``; missed completions are read back."""
        members = self.election.members()
        live_nodes = {m.node_id for m in members}
        live = {(m.node_id, m.labels.get("incarnation")) for m in members}
        with self._cond:
            runs = self.state.placed()
        now = time.monotonic()
        for name, run in runs:
            alive = (run.node, run.incarnation) in live if run.incarnation else run.node in live_nodes
            if not alive:
                self._mark_lost(name, run)
            elif now - run.since > RECHECK:
                run.since = now  # re-read at most every RECHECK seconds per run
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
            if ended.ended == lost.ended:  # written by this call, not read back from an earlier one
                self.metrics.lost_runs.inc()
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
                self._read_deferred()
            except DcronError as exc:
                log.warning("change feed unavailable: %s", exc)
                time.sleep(1.0)
                continue
            if len(changes) < FEED_BATCH:
                time.sleep(self.feed_interval)

    def _on_change(self, collection: str, doc_id: str) -> None:
        try:
            if collection == JOBS:
                job = self.records.job(doc_id)
                with self._cond:
                    self.state.upsert(job, self.clock())
                    self._cond.notify_all()
            elif collection == EXECUTIONS:
                with self._cond:
                    run = self.state.tracked(doc_id)
                if run is None:
                    return  # _finished would ignore it: spare the store a read
                ahead = (run.fire_time - self.clock()).total_seconds()
                heapq.heappush(self._deferred, (time.monotonic() + max(0.0, ahead) + FEED_DEFER, doc_id))
        except NotFoundError:
            return

    def _read_deferred(self) -> None:
        """Read the deferred execution changes that are due and still of an attempt in progress."""
        now, seen = time.monotonic(), set()
        while self._deferred and self._deferred[0][0] <= now:
            _, doc_id = heapq.heappop(self._deferred)
            if doc_id in seen or not self._tracking(doc_id):
                continue
            seen.add(doc_id)
            try:
                ex = self.records.execution(doc_id)
            except NotFoundError:
                continue
            except DcronError:
                heapq.heappush(self._deferred, (now + 1.0, doc_id))  # the feed loop pauses meanwhile
                raise
            if ex.status.terminal:
                self._finished(ex)

    def _tracking(self, exec_id: str) -> bool:
        """Whether ``exec_id`` (``JOB@FIRE_TIME#ATTEMPT``) is the attempt in progress of its job.

        Most execution changes are of attempts already known to have ended (the worker reports
        FINISHED directly), which :meth:`_finished` would ignore anyway.
        """
        with self._cond:
            return self.state.tracking(exec_id)

    # -- manual runs -------------------------------------------------------------------------------

    def run_now(self, job: Job) -> dict[str, object]:
        fire = self.clock()
        with self._cond:
            start = self.state.manual(job, fire)
            if start is None:
                queued = self.state.queued_manual(job.name)
                assert queued is not None
                return {
                    "queued": True,
                    "fire_time": format_instant(queued),
                    "execution": execution_id(job.name, queued, 1),
                }
            self._submit([start])
            self._cond.notify_all()
        return {
            "queued": False,
            "fire_time": format_instant(fire),
            "execution": execution_id(job.name, fire, 1),
        }
