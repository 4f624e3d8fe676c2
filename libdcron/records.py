"""Jobs and executions over a :class:`~libdcron.abc.DocumentStore`: the persistence layer.

The API, the leader and the recorder read and write jobs and executions only through
:class:`Records`; :mod:`libdcron.model` alone knows document shapes (``to_doc``/``from_doc``).

Writes that may race (two clients changing one job, a worker completing an attempt while the
leader marks it lost) go through :meth:`Records.change_job` and :meth:`Records.change_execution`:
read, apply a change function, write with the revision read, and on a conflict read again and
re-apply, a bounded number of times.

Error handling: every method raises what the store raises (:class:`UnavailableError` while it
is unreachable); :class:`NotFoundError` messages name the job or execution.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta

from .abc import EXECUTIONS, JOBS, DocumentStore, Scalar
from .errors import ConflictError, NotFoundError, ValidationError
from .model import Execution, Job, Status, execution_id, format_instant

log = logging.getLogger(__name__)

#: Tries of a read-change-write before a ConflictError reaches the caller.
CHANGE_TRIES = 8

#: Jobs per page of :meth:`Records.all_enabled_jobs`.
LOAD_PAGE = 1000
#: Jobs at most read for one page of a listing by state (:meth:`Records.list_jobs`).
LIST_SCAN = 5000
#: Job fields whose values repeat across jobs; :meth:`Records.all_enabled_jobs` shares them.
SHARED_FIELDS = ("schedule", "tz", "interpreter", "script", "script_sha256", "created", "updated")


class Records:
    def __init__(self, store: DocumentStore) -> None:
        self.store = store

    # -- jobs ----------------------------------------------------------------------------------

    def job(self, name: str) -> Job:
        try:
            return Job.from_doc(self.store.get(JOBS, name))
        except NotFoundError:
            raise NotFoundError(f"no job named {name!r}") from None

    def create_job(self, job: Job) -> Job:
        """Insert a new job; :class:`ConflictError` when the name is taken."""
        rev = self.store.create(JOBS, job.name, job.to_doc())
        return job.with_changes(rev=rev)

    def change_job(self, name: str, change: Callable[[Job], Job | None]) -> tuple[Job, bool]:
        """Apply ``change`` to the stored job (``None``: leave it); return the job and whether it changed."""
        for _ in range(CHANGE_TRIES):
            current = self.job(name)
            new = change(current)
            if new is None:
                return current, False
            try:
                rev = self.store.update(JOBS, name, new.to_doc(), current.rev or "")
                return new.with_changes(rev=rev), True
            except ConflictError:
                continue
        raise ConflictError(f"job {name!r} is being changed concurrently; try again")

    def create_jobs(self, jobs: Sequence[Job]) -> list[str | ConflictError]:
        """Insert new jobs in one bulk write; per job, its revision or a :class:`ConflictError`
        (the name is taken)."""
        return self.store.create_many(JOBS, [(job.name, job.to_doc()) for job in jobs])

    # A job's document id is its name: jobs are read in the order of ids, which every store keeps
    # without a secondary index (CouchDB's primary index is never behind the writes; a Mango
    # index is brought up to date by the first query after them, minutes at 100,000 new jobs).

    def list_jobs(
        self, limit: int, after: str | None = None, enabled: bool | None = None, scan: int = LIST_SCAN
    ) -> tuple[list[Job], str | None]:
        """One page of a listing by name: up to ``limit`` jobs named after ``after``, all or only
        the ``enabled`` (True) or disabled (False) ones, and the cursor of the next page (``None``
        at the end).  A state is compared here, on at most ``scan`` jobs read for one page, so a
        page may hold fewer than ``limit`` jobs (even none) and still have a next one: no store
        needs an index on the state (a CouchDB index takes minutes to build after 100,000 new jobs)
        and no page reads all jobs to find a rare state."""
        matched: list[Job] = []
        read = 0
        cursor = after
        while True:
            chunk = limit + 1 if enabled is None else min(limit + 1, max(1, scan - read))
            docs = self.store.find(
                JOBS, {}, sort=[("_id", False)], limit=chunk, after=None if cursor is None else ("_id", cursor)
            )
            read += len(docs)
            for doc in docs:
                if enabled is None or doc.get("enabled") is enabled:
                    if len(matched) == limit:
                        return matched, matched[-1].name  # one more exists
                    matched.append(Job.from_doc(doc))
                cursor = str(doc["_id"])
            if len(docs) < chunk:
                return matched, None
            if enabled is not None and read >= scan:
                return matched, cursor

    def all_enabled_jobs(self, page: int = LOAD_PAGE) -> list[Job]:
        """Every enabled job, by name, read ``page`` jobs at a time (a cursor on the ids; the
        disabled ones left out here, so that no secondary index is needed).

        For the leader's load of many jobs: only one page of documents is held at once, and the
        strings that repeat across jobs (:data:`SHARED_FIELDS`: the schedule, the interpreter, the
        script...) are one object each, not one per job.  A job written while the pages are read
        may be seen before or after the write (the caller follows the change feed from before).
        """
        shared: dict[str, str] = {}
        jobs: list[Job] = []
        after: str | None = None
        while True:
            docs = self.store.find(
                JOBS, {}, sort=[("_id", False)], limit=page, after=None if after is None else ("_id", after)
            )
            for doc in docs:
                if doc.get("enabled") is not True:
                    continue
                for key in SHARED_FIELDS:
                    value = doc.get(key)
                    if type(value) is str:
                        doc[key] = shared.setdefault(value, value)
                jobs.append(Job.from_doc(doc))
            if len(docs) < page:
                return jobs
            after = str(docs[-1]["_id"])

    # -- executions ----------------------------------------------------------------------------

    def execution(self, exec_id: str) -> Execution:
        try:
            return Execution.from_doc(self.store.get(EXECUTIONS, exec_id))
        except NotFoundError:
            raise NotFoundError(f"no execution {exec_id!r}") from None

    def attempt_exists(self, job: str, fire_time: datetime, attempt: int = 1) -> bool:
        try:
            self.store.get(EXECUTIONS, execution_id(job, fire_time, attempt))
        except NotFoundError:
            return False
        return True

    def fire_times_since(self, instant: datetime) -> set[tuple[str, datetime]]:
        """``(job, fire time)`` of every attempt 1 whose fire time is ``instant`` or later."""
        return {(ex.job, ex.fire_time) for ex in self._executions_since(instant) if ex.attempt == 1}

    def newest_attempts_since(self, instant: datetime) -> dict[tuple[str, datetime], Execution]:
        """The newest attempt of every ``(job, fire time)`` at ``instant`` or later.

        One query (a range on the fire-time index) answers the leader's lookback for every job at
        once: which fire times ran, and which ended ``lost``/``timeout`` without a retry.
        """
        newest: dict[tuple[str, datetime], Execution] = {}
        for ex in self._executions_since(instant):
            key = (ex.job, ex.fire_time)
            if key not in newest or newest[key].attempt < ex.attempt:
                newest[key] = ex
        return newest

    def _executions_since(self, instant: datetime) -> Iterator[Execution]:
        # Instants sort as text across whole seconds (not within one: "...:00Z" > "...:00.5Z"),
        # so the range starts a second early and the exact bound is checked here.
        bound = format_instant(instant - timedelta(seconds=1))
        for doc in self.store.find(EXECUTIONS, {}, sort=[("fire_time", False)], after=("fire_time", bound)):
            try:
                ex = Execution.from_doc(doc)
            except ValidationError:
                continue
            if ex.fire_time >= instant:
                yield ex

    def create_execution(self, ex: Execution) -> str:
        """Insert an attempt; :class:`ConflictError` when it exists (another worker runs it)."""
        return self.store.create(EXECUTIONS, ex.id, ex.to_doc())

    def update_execution(self, ex: Execution, rev: str) -> str:
        """Replace an attempt's document if its revision is still ``rev`` (else ConflictError)."""
        return self.store.update(EXECUTIONS, ex.id, ex.to_doc(), rev)

    def create_executions(self, executions: list[Execution]) -> list[str | ConflictError]:
        """Insert many attempts in one bulk write: per attempt its revision or a ConflictError."""
        return self.store.create_many(EXECUTIONS, [(ex.id, ex.to_doc()) for ex in executions])

    def update_executions(
        self, items: list[tuple[Execution, str]]
    ) -> list[str | ConflictError | NotFoundError]:
        """Replace many attempts ``(execution, rev)`` in one bulk write (see ``update_many``)."""
        return self.store.update_many(EXECUTIONS, [(ex.id, ex.to_doc(), rev) for ex, rev in items])

    def running(self) -> list[Execution]:
        return [Execution.from_doc(d) for d in self.store.find(EXECUTIONS, {"status": Status.RUNNING.value})]

    def executions(self, job: str, limit: int, skip: int = 0, status: str | None = None) -> list[Execution]:
        """A job's executions (of one status, if given), newest fire time (then attempt) first."""
        selector: dict[str, Scalar] = {"job": job} if status is None else {"job": job, "status": status}
        docs = self.store.find(
            EXECUTIONS, selector, sort=[("fire_time", True), ("attempt", True)], limit=limit, skip=skip
        )
        return [Execution.from_doc(d) for d in docs]

    def recent_executions(self, limit: int, skip: int = 0, status: str | None = None) -> list[Execution]:
        """Every job's executions (of one status, if given), newest fire time first."""
        selector: dict[str, Scalar] = {} if status is None else {"status": status}
        docs = self.store.find(EXECUTIONS, selector, sort=[("fire_time", True)], limit=limit, skip=skip)
        return [Execution.from_doc(d) for d in docs]

    def change_execution(
        self,
        exec_id: str,
        change: Callable[[Execution | None], Execution | None],
        pause: Callable[[int], None] | None = None,
        tries: int = CHANGE_TRIES,
    ) -> Execution | None:
        """Read-change-write one attempt's document; ``change`` gets ``None`` when it does not exist.

        ``change`` returns the new execution, or ``None`` to leave the document as it is.  Returns
        what was written (``None`` if nothing was).  ``pause(n)`` is called after the n-th lost race.
        """
        for attempt in range(tries):
            if attempt and pause is not None:
                pause(attempt - 1)
            try:
                current: Execution | None = self.execution(exec_id)
            except NotFoundError:
                current = None
            new = change(current)
            if new is None:
                return None
            try:
                if current is None:
                    rev = self.store.create(EXECUTIONS, exec_id, new.to_doc())
                else:
                    rev = self.store.update(EXECUTIONS, exec_id, new.to_doc(), current.rev or "")
                return new.with_changes(rev=rev)
            except ConflictError:
                continue
        raise ConflictError(f"execution {exec_id!r} is being changed concurrently")

    def mark_lost(self, lost: Execution) -> Execution | None:
        """Record ``lost`` unless the attempt already ended; return the ended attempt either way.

        The start time and the log URL of the document are kept.  ``None`` when the attempt turns out to be
        still running after all (it changed under us; the caller looks again later).
        """
        ended: list[Execution] = []

        def change(current: Execution | None) -> Execution | None:
            if current is not None and current.status.terminal:
                ended.append(current)
                return None
            if current is None:
                return lost
            return lost.with_changes(started=current.started, log=current.log)

        written = self.change_execution(lost.id, change)
        return written or (ended[0] if ended else None)

    def set_log(self, exec_id: str, url: str) -> bool:
        """Set an attempt's log URL, whatever else changed; False if the attempt does not exist."""

        def change(current: Execution | None) -> Execution | None:
            if current is None or current.log == url:
                return None
            return current.with_changes(log=url)

        try:
            self.execution(exec_id)
        except NotFoundError:
            return False
        self.change_execution(exec_id, change)
        return True

    # -- retention (libdcron.retention) ----------------------------------------------------------

    def oldest_executions(self, job: str, limit: int) -> list[Execution]:
        """A job's executions, oldest fire time (then attempt) first: the other end of
        :meth:`executions`' index range."""
        docs = self.store.find(
            EXECUTIONS, {"job": job}, sort=[("fire_time", False), ("attempt", False)], limit=limit
        )
        return [Execution.from_doc(d) for d in docs]

    def delete_execution(self, ex: Execution) -> None:
        """Delete an attempt's document if its revision is still ``ex.rev``: :class:`ConflictError`
        when it changed since it was read, :class:`NotFoundError` when it is gone already."""
        self.store.delete(EXECUTIONS, ex.id, ex.rev or "")
