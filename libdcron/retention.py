"""Retention: the leader deletes old executions and their logs, so that they do not grow forever.

Policy (:class:`Policy`): of each job, the executions of its newest ``keep_runs`` fire times are
kept (every attempt of a kept fire time), and of those only the ones whose fire time is at most
``keep_days`` days old.  Both limits apply: an execution goes as soon as it is beyond either one,
so that storage stays bounded by the number of runs however often a job fires (like Kubernetes'
history limits) and by age however rarely (like Cronicle's log expiry).  0 sets no limit of that
kind; both 0 keeps everything.  A job's own ``keep_runs`` / ``keep_days`` replace the cluster's,
each on its own (a job giving only ``keep_runs`` keeps the cluster's ``keep_days``).  The cluster's
defaults are 100 runs and 30 days (``NodeSettings.keep_runs`` / ``keep_days``).

Never deleted: an execution that is not terminal (``running``), any attempt of a job's newest fire
time, and a log that a kept execution points at.  An execution that ended without a log (other
than an ``error``, which never has one) is left for :data:`LOG_GRACE`: its worker may still be
uploading the log from its outbox.  Only an execution's own log is deleted (the key
the worker gives it, ``logs/JOB/FIRE_TIME_ATTEMPT.log``, or the earlier
``logs/JOB/FIRE_TIME/ATTEMPT.log``); a log elsewhere is left where it is.

Order of deletion: the log first, then the document.  A crash (or an outage) between the two
leaves a document whose log is gone; the document still matches the policy, so the next sweep
deletes the log again (a missing object is no error) and then the document.  The other order
would leave, after such a crash, a log that no document names, which no sweep would ever find.
A document that changed since it was read (:class:`ConflictError`: its log URL was just set) is
left for the next sweep to decide again.

Who sweeps: the leader only (:class:`RetentionRunner`, started by the node when it is elected and
stopped when it steps down), 60 s after the election and then every ``retention_interval`` seconds
(default 600) after the end of the previous sweep.  Two sweepers for a moment (a leader change
mid-sweep) are harmless: every delete is conditional on a revision, and a document or object
already gone is no error.  A sweep walks the jobs by name in pages (:data:`PAGE`) and costs,
for a job with nothing to delete, one query per limit (an index range that is empty, or one
document long); it spends at most ``rate`` store and object requests per second (default
:data:`RATE`), so 100,000 jobs with nothing to delete (about 200,000 requests) take under 4
minutes, in the background (on SQLite the same requests take about 5 s unpaced).

Error handling: a sweep never raises :class:`DcronError`.  The document store unavailable ends
the sweep (logged at WARNING); object storage unavailable (or a malformed document) skips the
job at hand.  The next sweep starts after the last job finished, so an outage does not make the
first jobs by name the only ones ever swept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .abc import DocumentStore, ObjectStore
from .errors import ConflictError, DcronError, NotFoundError, UnavailableError, ValidationError
from .model import Execution, Job, Status, legacy_log_key, log_key, utcnow
from .records import Records

log = logging.getLogger(__name__)

#: Jobs read per page, and executions considered per job and round.
PAGE = 100
#: Store and object-store requests per second a sweep spends at most.
RATE = 1000.0
#: Documents per read of a job's newest fire times (when keep_runs is large).
HEAD_PAGE = 1000
#: How long an ended execution without a log is left alone: its log may still be journaled in
#: its worker's outbox, which sets the log URL on the document once object storage is back.
LOG_GRACE = timedelta(days=1)
#: Seconds from the election to the first sweep, and between the end of one and the next.
FIRST_DELAY = 60.0
INTERVAL = 600.0


@dataclass(frozen=True)
class Policy:
    """How many executions of a job to keep: ``keep_runs`` fire times, ``keep_days`` days (0: no limit)."""

    keep_runs: int = 100
    keep_days: int = 30

    @property
    def unlimited(self) -> bool:
        return not self.keep_runs and not self.keep_days

    def for_job(self, job: Job) -> Policy:
        """This policy with the job's own settings in place of the cluster's."""
        return Policy(
            self.keep_runs if job.keep_runs is None else job.keep_runs,
            self.keep_days if job.keep_days is None else job.keep_days,
        )


@dataclass
class SweepReport:
    """What one sweep did."""

    jobs: int = 0  # jobs looked at
    executions: int = 0  # execution documents deleted
    logs: int = 0  # logs deleted
    kept_logs: int = 0  # logs of deleted executions left in place (not their own, or not reachable)
    skipped_jobs: list[str] = field(default_factory=list)  # jobs left for the next sweep
    complete: bool = False  # reached the last job
    error: str | None = None  # why it ended early
    seconds: float = 0.0


class _Stopped(Exception):
    """The sweep was asked to stop."""


class _StoreUnavailable(UnavailableError):
    """Object storage could not delete a log (the document store is another matter)."""


def own_log(ex: Execution) -> bool:
    """Whether ``ex.log`` is the key the worker gives this attempt's log (and no other's), or
    gave it before :func:`~libdcron.model.log_key` (``logs/JOB/FIRE_TIME/ATTEMPT.log``)."""
    url = str(ex.log or "")
    return bool(url) and any(
        url.endswith("/" + key(ex.job, ex.fire_time, ex.attempt)) for key in (log_key, legacy_log_key)
    )


class Retention:
    """The sweeper: :meth:`sweep_once` applies ``policy`` to every job once (no thread of its own).

    ``resolve_objects`` gives the object store of a log URL (the node's
    :meth:`~libdcron.node.Node.resolve_objects`); ``rate`` caps requests per second (``None``:
    no cap); ``clock`` gives "now" (aware UTC).  Setting :attr:`stopping` ends a sweep at the
    next request.
    """

    def __init__(
        self,
        store: DocumentStore,
        resolve_objects: Callable[[str], ObjectStore],
        policy: Policy,
        *,
        page: int = PAGE,
        rate: float | None = RATE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.records = Records(store)
        self.resolve_objects = resolve_objects
        self.policy = policy
        self.page = page
        self.rate = rate
        self.clock = clock
        self.stopping = threading.Event()
        self._cursor: str | None = None  # the last job of an unfinished sweep
        self._started = 0.0
        self._requests = 0

    # -- pacing ----------------------------------------------------------------------------------

    def _tick(self, requests: int = 1) -> None:
        """Count requests; wait as long as keeps the sweep within ``rate`` per second."""
        if self.stopping.is_set():
            raise _Stopped
        self._requests += requests
        if self.rate:
            ahead = self._started + self._requests / self.rate - time.monotonic()
            if ahead > 0 and self.stopping.wait(ahead):
                raise _Stopped

    # -- sweeping --------------------------------------------------------------------------------

    def sweep_once(self) -> SweepReport:
        """Apply the policy to every job (from where an unfinished sweep stopped); never raises
        :class:`DcronError`."""
        report = SweepReport()
        self._started, self._requests = time.monotonic(), 0
        now = self.clock()
        try:
            while True:
                jobs, more = self.records.list_jobs(self.page, after=self._cursor)
                self._tick()
                for job in jobs:
                    report.jobs += 1
                    self._sweep_job(job, now, report)
                    self._cursor = job.name
                if more is None:
                    self._cursor, report.complete = None, True
                    break
        except _Stopped:
            report.error = "stopped"
        except UnavailableError as exc:
            report.error = str(exc)
            log.warning("retention: document store unavailable, sweeping again later: %s", exc)
        except DcronError as exc:  # a malformed job document: the leader reports it too
            report.error = str(exc)
            log.warning("retention: sweep ended early, trying again later: %s", exc)
        report.seconds = time.monotonic() - self._started
        level = logging.INFO if report.executions or report.error else logging.DEBUG
        log.log(
            level,
            "retention: %d job(s) looked at, %d execution(s) and %d log(s) deleted in %.1f s%s",
            report.jobs,
            report.executions,
            report.logs,
            report.seconds,
            "" if report.complete else f" (unfinished: {report.error})",
        )
        return report

    def _sweep_job(self, job: Job, now: datetime, report: SweepReport) -> None:
        """Delete what the policy does not keep of one job, :data:`PAGE` executions a round."""
        policy = self.policy.for_job(job)
        if policy.unlimited:
            return
        cutoff = now - timedelta(days=policy.keep_days) if policy.keep_days else None
        try:
            while True:
                doomed, kept_logs = self._doomed(job.name, policy, cutoff, now - LOG_GRACE)
                deleted = sum(self._delete(ex, kept_logs, report) for ex in doomed)
                if not deleted:
                    return
        except UnavailableError as exc:
            if not isinstance(exc, _StoreUnavailable):
                raise
            self._skip(job, report, f"object storage unavailable: {exc}")
        except ValidationError as exc:
            self._skip(job, report, f"malformed execution: {exc}")

    def _skip(self, job: Job, report: SweepReport, why: str) -> None:
        report.skipped_jobs.append(job.name)
        log.warning("retention: leaving job %s for the next sweep: %s", job.name, why, extra={"job": job.name})

    def _doomed(
        self, job: str, policy: Policy, cutoff: datetime | None, settled: datetime
    ) -> tuple[list[Execution], set[str]]:
        """Up to a page of the job's executions to delete, and the logs kept ones point at."""
        candidates: dict[str, Execution] = {}
        if policy.keep_runs:
            # Positions from keep_runs on, newest first: empty (one index probe) when there are
            # no more documents than the limit.
            beyond = self.records.executions(job, limit=self.page, skip=policy.keep_runs)
            self._tick()
            candidates.update((ex.id, ex) for ex in beyond)
        if cutoff is not None:
            oldest = self.records.oldest_executions(job, limit=1)
            self._tick()
            if oldest and oldest[0].fire_time < cutoff:
                old = self.records.oldest_executions(job, limit=self.page)
                self._tick()
                candidates.update((ex.id, ex) for ex in old if ex.fire_time < cutoff)
        if not candidates:
            return [], set()
        head = self._newest(job, max(policy.keep_runs, 1))
        newest = head[0].fire_time if head else None
        top = {ex.fire_time for ex in head}

        def doomed(ex: Execution) -> bool:
            if not ex.status.terminal or ex.fire_time == newest:
                return False
            if not ex.log and ex.status is not Status.ERROR and (ex.ended or ex.fire_time) > settled:
                return False  # its log may be on its way
            return bool(policy.keep_runs and ex.fire_time not in top) or bool(
                cutoff is not None and ex.fire_time < cutoff
            )

        chosen = [ex for ex in candidates.values() if doomed(ex)]
        gone = {ex.id for ex in chosen}
        kept_logs = {
            str(ex.log) for ex in [*head, *candidates.values()] if ex.log and ex.id not in gone
        }
        return chosen, kept_logs

    def _newest(self, job: str, count: int) -> list[Execution]:
        """The executions of the job's newest ``count`` fire times (every attempt of each)."""
        found: list[Execution] = []
        times: set[datetime] = set()
        size = min(count + 10, HEAD_PAGE)
        while True:
            page = self.records.executions(job, limit=size, skip=len(found))
            self._tick()
            for ex in page:
                if ex.fire_time not in times:
                    if len(times) == count:
                        return found
                    times.add(ex.fire_time)
                found.append(ex)
            if len(page) < size:
                return found

    def _delete(self, ex: Execution, kept_logs: set[str], report: SweepReport) -> bool:
        """Delete the execution's own log, then its document; whether the document is gone."""
        extra = {"job": ex.job, "execution": ex.id}
        if ex.log and own_log(ex) and ex.log not in kept_logs:
            try:
                objects = self.resolve_objects(ex.log)
            except ValidationError:  # outside the stores this node may use: not ours to delete
                report.kept_logs += 1
            else:
                try:
                    objects.delete(ex.log)
                except UnavailableError as exc:
                    raise _StoreUnavailable(str(exc)) from exc
                self._tick()
                report.logs += 1
        elif ex.log:
            report.kept_logs += 1
        try:
            self.records.delete_execution(ex)
        except NotFoundError:
            return True  # another sweeper was quicker
        except ConflictError:
            log.debug("retention: %s changed since it was read; deciding again later", ex.id, extra=extra)
            return False
        finally:
            self._tick()
        report.executions += 1
        return True


class RetentionRunner:
    """:meth:`Retention.sweep_once` on a thread: after ``first_delay`` seconds, then ``interval``
    seconds after the end of each sweep, until :meth:`stop`.  Nothing it meets ends the thread."""

    def __init__(
        self, retention: Retention, interval: float = INTERVAL, first_delay: float = FIRST_DELAY
    ) -> None:
        self.retention = retention
        self.interval = interval
        self.first_delay = first_delay
        self.last: SweepReport | None = None
        self._thread = threading.Thread(target=self._run, name="dcron-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 2.0) -> None:
        """Stop sweeping; wait up to ``timeout`` seconds for the thread (``None``: do not wait)."""
        self.retention.stopping.set()
        if timeout is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        stopping = self.retention.stopping
        delay = self.first_delay
        while not stopping.wait(delay):
            try:
                self.last = self.retention.sweep_once()
            except Exception:  # a bug here must not end retention for good
                log.exception("retention: sweep failed; trying again in %g s", self.interval)
            delay = self.interval
