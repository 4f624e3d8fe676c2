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
from collections.abc import Callable
from datetime import datetime

from .abc import EXECUTIONS, JOBS, DocumentStore
from .errors import ConflictError, NotFoundError
from .model import Execution, Job, Status, execution_id

log = logging.getLogger(__name__)

#: Tries of a read-change-write before a ConflictError reaches the caller.
CHANGE_TRIES = 8


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

    def enabled_jobs(self) -> list[Job]:
        return [Job.from_doc(doc) for doc in self.store.find(JOBS, {"enabled": True})]

    def jobs(self) -> list[Job]:
        return [Job.from_doc(doc) for doc in self.store.find(JOBS, {}, sort=[("name", False)])]

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

    def create_execution(self, ex: Execution) -> str:
        """Insert an attempt; :class:`ConflictError` when it exists (another worker runs it)."""
        return self.store.create(EXECUTIONS, ex.id, ex.to_doc())

    def update_execution(self, ex: Execution, rev: str) -> str:
        """Replace an attempt's document if its revision is still ``rev`` (else ConflictError)."""
        return self.store.update(EXECUTIONS, ex.id, ex.to_doc(), rev)

    def running(self) -> list[Execution]:
        return [Execution.from_doc(d) for d in self.store.find(EXECUTIONS, {"status": Status.RUNNING.value})]

    def executions(self, job: str, limit: int, skip: int = 0) -> list[Execution]:
        """A job's executions, newest fire time (then attempt) first."""
        docs = self.store.find(
            EXECUTIONS, {"job": job}, sort=[("fire_time", True), ("attempt", True)], limit=limit, skip=skip
        )
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
