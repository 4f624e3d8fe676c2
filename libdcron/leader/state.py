"""The leader's pure scheduling state: no threads, no store, no transport, no clock of its own.

:class:`LeaderState` holds the heap of next fire instants (each sent ahead of its fire time by
its lead), job generations, the newest scheduled fire time started per job, the run in progress
and the ``pending`` run of each job, retries and manual runs.  Every method takes an event (the
jobs loaded at election, a job upserted or disabled, time advanced to ``now``, a run accepted by
a node, an attempt ended with an :class:`Execution`, a manual run) and returns what to do: a list
of :class:`Start` decisions, each an attempt to dispatch.  The caller (:class:`~libdcron.leader.
loop.Leader`) holds its lock around every call, does the I/O and dispatches the starts.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..errors import DcronError
from ..model import Execution, Job, execution_id, format_instant
from ..schedule import Schedule, parse_schedule

log = logging.getLogger(__name__)

LOOKBACK = 300.0

#: ``attempt_exists(job, fire_time)``: whether attempt 1 of that fire time has an execution.
AttemptExists = Callable[[str, datetime], bool]

#: Entries of the fire-time memo before it is emptied (it is only a cache).
MEMO_LIMIT = 1 << 16


class FireTimes:
    """Fire-time computations memoised by ``(schedule, instant)``.

    Schedules are immutable and their answers deterministic, and jobs share schedules (``@hourly``,
    ``*/5 * * * *``, the same minute of the day): at election every job asks for the same ``now``,
    and jobs of one schedule fire together and ask for the same next fire time.  The memo is a
    plain cache, emptied when it holds :data:`MEMO_LIMIT` entries.
    """

    __slots__ = ("_after", "_newest")

    def __init__(self) -> None:
        self._after: dict[tuple[Schedule, datetime], datetime] = {}
        self._newest: dict[tuple[Schedule, datetime, datetime], datetime | None] = {}

    def next_after(self, schedule: Schedule, after: datetime) -> datetime:
        key = (schedule, after)
        found = self._after.get(key)
        if found is None:
            found = schedule.next_after(after)
            if len(self._after) >= MEMO_LIMIT:
                self._after.clear()
            self._after[key] = found
        return found

    def newest_at_or_before(self, schedule: Schedule, at: datetime, not_before: datetime) -> datetime | None:
        key = (schedule, at, not_before)
        try:
            return self._newest[key]
        except KeyError:
            pass
        found = schedule.newest_at_or_before(at, not_before)
        if len(self._newest) >= MEMO_LIMIT:
            self._newest.clear()
        self._newest[key] = found
        return found

    def clear(self) -> None:
        self._after.clear()
        self._newest.clear()


@dataclass(slots=True)
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


@dataclass(slots=True)
class JobState:
    job: Job
    schedule: Schedule | None
    generation: int = 0  # bumped when the job changes; stale heap entries are skipped
    next_fire: datetime | None = None
    following: datetime | None = None  # the fire time after next_fire, for its lead
    run: Run | None = None
    pending: tuple[datetime, bool] | None = None  # (fire time, manual) waiting for the run to end


@dataclass(frozen=True, slots=True)
class Start:
    """A decision: dispatch ``run``, a new attempt of job ``job`` (now the job's run in progress)."""

    job: str
    run: Run

    @property
    def fire_time(self) -> datetime:
        return self.run.fire_time

    @property
    def attempt(self) -> int:
        return self.run.attempt

    @property
    def manual(self) -> bool:
        return self.run.manual

    @property
    def tried(self) -> set[str]:
        """Nodes that already ran an attempt of this fire time: the next one goes elsewhere."""
        return self.run.tried

    @property
    def exec_id(self) -> str:
        return self.run.exec_id(self.job)


class LeaderState:
    def __init__(self, lookback: float = LOOKBACK, lead: float = 5.0) -> None:
        self.lookback = lookback
        self.lead = lead
        self.jobs: dict[str, JobState] = {}
        #: (send instant, seq, job, generation, fire instant): a run is sent ahead of its fire time.
        self._heap: list[tuple[datetime, int, str, int, datetime]] = []
        self._seq = itertools.count()
        self._generations = itertools.count(1)  # global, so a re-created JobState never reuses one
        #: Newest scheduled fire time started per job; survives a disable/enable or an update, so
        #: a fire time already sent ahead (within ``lead``) is not sent again.
        self._last_fire: dict[str, datetime] = {}
        self._fire_times = FireTimes()
        #: Names of the jobs with a run in progress (maybe a few stale ones): :meth:`placed` looks at
        #: these, once a second, not at every job.
        self._busy: set[str] = set()
        #: Fire times never run because a newer one of the same job, or a manual run, came while
        #: they waited behind a run still in progress (no overlap keeps one run waiting), or
        #: because they came due while a manual run waited; the leader moves the count into its
        #: metrics and resets it.
        self.skipped = 0

    def clear(self) -> None:
        """Forget the schedule (stepping down)."""
        self.jobs.clear()
        self._heap.clear()
        self._busy.clear()
        self._fire_times.clear()

    # -- events ----------------------------------------------------------------------------------

    def load(
        self,
        jobs: Iterable[Job],
        running: Iterable[Execution],
        now: datetime,
        attempt_exists: AttemptExists,
        unretried: Iterable[Execution] = (),
    ) -> list[Start]:
        """Elected: the enabled jobs and the runs in progress, as read from the store.

        A job's newest fire time within :attr:`lookback` runs once unless ``attempt_exists``.
        ``unretried``: the newest attempts within the lookback that ended ``lost`` or ``timeout``
        with no later attempt (the leader that should have retried them stopped, as a single node
        does on SIGTERM): each is retried now, unless its job has a run in progress or a newer
        fire time already started.
        """
        for job in jobs:
            self._upsert(job, now, attempt_exists)
        for ex in sorted(running, key=lambda e: (e.fire_time, e.attempt)):
            js = self.jobs.get(ex.job)
            if js is not None:
                self._busy.add(ex.job)
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
                        self._push(js, self._fire_times.next_after(js.schedule, ex.fire_time))  # type: ignore[arg-type]
        self._fire_times.clear()  # the load's answers (asked at ``now``) are of no further use
        retries: list[Start] = []
        for ex in unretried:
            js = self.jobs.get(ex.job)
            if js is None or js.run is not None:
                continue
            if not ex.manual:
                if self._last_fire.get(ex.job, ex.fire_time) > ex.fire_time:
                    continue
                self._last_fire[ex.job] = ex.fire_time
            js.run = Run(ex.fire_time, ex.attempt, ex.manual, node=ex.node, tried={ex.node})
            retries += self.ended(ex)  # as if it had just ended: retried, or the job rests
        starts = [self._release(js) for js in self.jobs.values() if js.run is None]
        return retries + [s for s in starts if s is not None]

    def upsert(self, job: Job, now: datetime) -> None:
        """A job was written (created, changed, disabled or enabled)."""
        self._upsert(job, now, None)

    def advance(self, now: datetime) -> list[Start]:
        """Time is ``now``: the fire times whose send instant came."""
        starts: list[Start] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, name, generation, fire = heapq.heappop(self._heap)
            js = self.jobs.get(name)
            if js is None or js.generation != generation or js.schedule is None:
                continue
            start = self._due(js, fire)
            if start is not None:
                starts.append(start)
        return starts

    def next_send(self) -> datetime | None:
        """The earliest send instant in the heap (maybe a stale entry's): when to call :meth:`advance`."""
        return self._heap[0][0] if self._heap else None

    def manual(self, job: Job, now: datetime) -> Start | None:
        """Run ``job`` now; ``None`` when it waits behind the run in progress (then
        :meth:`queued_manual` is its fire time).  One manual run waits at most: a request while
        one waits is that run.  It takes the place of a scheduled fire time waiting, if any."""
        js = self.jobs.get(job.name)
        if js is None:
            js = JobState(job, None)
            self.jobs[job.name] = js
        if js.run is not None:
            if js.pending is not None and js.pending[1]:
                return None  # the run already waiting is this one
            if js.pending is not None:
                self.skipped += 1
                log.info(
                    "%s: %s skipped, a manual run waits instead (no overlap)",
                    job.name,
                    format_instant(js.pending[0]),
                    extra={"job": job.name},
                )
            js.pending = (now, True)
            return None
        return self._start(js, now, 1, True)

    def queued_manual(self, name: str) -> datetime | None:
        """The fire time of the manual run of ``name`` waiting behind its run in progress."""
        js = self.jobs.get(name)
        pending = js.pending if js is not None else None
        return pending[0] if pending is not None and pending[1] else None

    def accepted(self, name: str, run: Run, node: str, incarnation: str | None) -> list[Start]:
        """``node`` (process ``incarnation``) accepted ``run`` of job ``name``."""
        run.node = node
        run.incarnation = incarnation
        run.tried.add(node)
        run.since = time.monotonic()
        early, run.early = run.early, None
        if early is not None and early.node == node:
            return self.reported(early)
        return []

    def adopted(self, name: str, run: Run, ex: Execution) -> list[Start]:
        """``run`` turned out to exist already (another leader's dispatch, ``ex``): follow it."""
        run.node = ex.node
        run.incarnation = ex.incarnation
        run.tried.add(ex.node)
        if ex.status.terminal:
            return self.ended(ex)
        return []

    def reported(self, ex: Execution) -> list[Start]:
        """A worker reports that an attempt ended (FINISHED).

        Only the attempt in progress counts, and only from the node (and process) running it:
        duplicates, stale reports and reports from any other node are ignored.
        """
        if not ex.status.terminal:
            return []
        js = self.jobs.get(ex.job)
        run = js.run if js is not None else None
        if run is None or run.fire_time != ex.fire_time or run.attempt != ex.attempt:
            return []
        if run.node is None:  # the DISPATCH reply is not processed yet; accepted() checks the node
            run.early = ex
            return []
        if ex.node != run.node or (run.incarnation and ex.incarnation != run.incarnation):
            log.warning(
                "ignored FINISHED of %s from %s: it runs on %s",
                ex.id,
                ex.node,
                run.node,
                extra={"job": ex.job, "execution": ex.id},
            )
            return []
        return self.ended(ex)

    def ended(self, ex: Execution) -> list[Start]:
        """An attempt ended, as read from the store (or a checked FINISHED): retry, catch up or rest."""
        js = self.jobs.get(ex.job)
        run = js.run if js is not None else None
        if js is None or run is None or run.fire_time != ex.fire_time or run.attempt != ex.attempt:
            return []
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
            return [self._start(js, ex.fire_time, ex.attempt + 1, ex.manual, tried=run.tried | {ex.node})]
        if js.pending is not None:
            start = self._release(js)
            return [start] if start is not None else []
        if not js.job.enabled:
            del self.jobs[ex.job]
        return []

    # -- queries ---------------------------------------------------------------------------------

    def current(self, name: str, run: Run) -> Job | None:
        """The job, if ``run`` is still its run in progress (else a dispatch is moot)."""
        js = self.jobs.get(name)
        return js.job if js is not None and js.run is run else None

    def undispatched(self, name: str) -> Run | None:
        """The job's run in progress if no worker has accepted it yet."""
        js = self.jobs.get(name)
        return js.run if js is not None and js.run is not None and js.run.node is None else None

    def placed(self) -> list[tuple[str, Run]]:
        """Runs in progress that a worker accepted."""
        placed: list[tuple[str, Run]] = []
        for name in list(self._busy):
            js = self.jobs.get(name)
            if js is None or js.run is None:
                self._busy.discard(name)
            elif js.run.node:
                placed.append((name, js.run))
        return placed

    def tracking(self, exec_id: str) -> bool:
        """Whether ``exec_id`` (``JOB@FIRE_TIME#ATTEMPT``) is the attempt in progress of its job."""
        return self.tracked(exec_id) is not None

    def tracked(self, exec_id: str) -> Run | None:
        """The run of ``exec_id`` when it is the attempt in progress of its job, else None."""
        name = exec_id.partition("@")[0]  # job names hold no '@'
        js = self.jobs.get(name)
        if js is not None and js.run is not None and js.run.exec_id(name) == exec_id:
            return js.run
        return None

    # -- internals -------------------------------------------------------------------------------

    def _upsert(self, job: Job, now: datetime, attempt_exists: AttemptExists | None) -> None:
        """Add or replace a job's state; with ``attempt_exists``, also look back (at election)."""
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
        if attempt_exists is not None:
            self._lookback(js, now, attempt_exists)
        self.jobs[job.name] = js
        self._push(js, self._fire_times.next_after(schedule, max(now, self._last_fire.get(job.name, now))))

    def _lookback(self, js: JobState, now: datetime, attempt_exists: AttemptExists) -> None:
        """Queue the newest fire time within the lookback window if no attempt of it exists."""
        assert js.schedule is not None
        newest = self._fire_times.newest_at_or_before(
            js.schedule, now, now - timedelta(seconds=self.lookback)
        )
        if newest is None:
            return
        if attempt_exists(js.job.name, newest):
            return  # already ran (or runs) under a previous leader
        log.info("lookback: %s missed %s, running it now", js.job.name, format_instant(newest))
        js.pending = (newest, False)

    def _due(self, js: JobState, fire: datetime) -> Start | None:
        """A fire time of ``js`` is due."""
        assert js.schedule is not None
        following = (
            js.following if js.following is not None else self._fire_times.next_after(js.schedule, fire)
        )
        self._push(js, following)
        if js.run is None:
            return self._start(js, fire, 1, False)
        # A manual run waiting runs instead (it was asked for, and its id given out).
        manual_waits = js.pending is not None and js.pending[1]
        log.info(
            "%s: run of %s still in progress, %s %s (no overlap)",
            js.job.name,
            format_instant(js.run.fire_time),
            format_instant(fire),
            "skipped: a manual run waits" if manual_waits else "waits",
            extra={"job": js.job.name},
        )
        if manual_waits:
            self.skipped += 1
            return None
        if js.pending is not None:
            self.skipped += 1
            log.info(
                "%s: %s skipped, %s waits instead (no overlap)",
                js.job.name,
                format_instant(js.pending[0]),
                format_instant(fire),
                extra={"job": js.job.name},
            )
        js.pending = (fire, False)
        return None

    def _push(self, js: JobState, fire: datetime) -> None:
        """Make ``fire`` the job's next fire time; it is sent ahead by its lead.

        The lead is :attr:`lead` at most and half the gap to the following fire time at most, so a
        run sent ahead never waits behind the previous run of the same job.
        """
        assert js.schedule is not None
        js.next_fire = fire
        js.following = self._fire_times.next_after(js.schedule, fire)
        lead = min(self.lead, (js.following - fire).total_seconds() / 2)
        send_at = fire - timedelta(seconds=lead)
        heapq.heappush(self._heap, (send_at, next(self._seq), js.job.name, js.generation, fire))

    def _release(self, js: JobState) -> Start | None:
        """Start the run that waited for ``js`` to be free, if any."""
        if js.pending is not None and js.run is None:
            fire, manual = js.pending
            js.pending = None
            return self._start(js, fire, 1, manual)
        return None

    def _start(
        self, js: JobState, fire: datetime, attempt: int, manual: bool, tried: set[str] | None = None
    ) -> Start:
        """One attempt becomes the job's run in progress, to dispatch."""
        if not manual:
            self._last_fire[js.job.name] = max(fire, self._last_fire.get(js.job.name, fire))
        js.run = Run(fire, attempt, manual, tried=set(tried or ()))
        self._busy.add(js.job.name)
        return Start(js.job.name, js.run)
