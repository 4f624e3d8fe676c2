"""Durable execution records: write now, or journal on disk and write when the store is back.

The worker never loses an execution because the document store is down.  Writes are batched:
:meth:`Recorder.create_many` inserts the runs of one DISPATCH in one bulk write, and
:meth:`Recorder.complete_later` queues a run's end for a writer thread that completes every queued
run in one bulk write (``update_many``; one SQLite transaction, one CouchDB ``_bulk_docs``).  Each write that fails
with :class:`UnavailableError` is journaled as one JSON file under ``<node dir>/outbox`` and a
background thread replays the journal in order, with exponential backoff, until it succeeds.  The
journal survives a restart of the node.  Log uploads that fail are journaled the same way; the
execution's ``log`` field is set once the upload succeeds.

Error handling: document writes are replayed strictly in order, and the first one that still
fails stops the pass.  Uploads wait behind earlier document writes (an execution's log is set
after its document exists) but never hold writes back: while object storage is down, runs are
still completed (with ``log`` unset), their logs stay in the worker's spool folder and the
journaled uploads are retried with the same backoff, capped at ``max_backoff`` seconds (default
30, or the ``DCRON_OUTBOX_MAX_BACKOFF`` environment variable).

Concurrent writers: an execution document can change under a write (a leader marks the attempt
``lost`` at the moment it completes, the outbox sets its log URL).  Every write then re-reads the
document and tries again, up to :data:`CONFLICT_RETRIES` times; one that still loses stays in the
outbox and is retried with its backoff (a WARNING each time), so nothing is dropped.  A status
another party recorded first is kept (the attempt already ended for everybody else), but the log
URL is set on it all the same: it is the log of that attempt, and only this worker has it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .abc import DocumentStore, ObjectStore
from .backoff import Backoff
from .errors import ConflictError, DcronError, NotFoundError, UnavailableError, ValidationError
from .model import Execution, parse_instant, utcnow
from .records import Records
from .retention import LOG_GRACE

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
MAX_BACKOFF_ENV = "DCRON_OUTBOX_MAX_BACKOFF"
#: Suffix of journaled uploads, so that counting pending document writes needs no parsing.
UPLOAD_SUFFIX = ".upload.json"
#: Re-reads of a document that changed under a write before the write waits for the next pass.
CONFLICT_RETRIES = 10
#: Most ends the writer completes in one bulk write.
BATCH = 500


class _LogPending(UnavailableError):
    """An execution's log URL could not be written yet (the document kept changing, or does not
    exist yet): the write stays in the outbox."""


def _max_backoff_from_env() -> float:
    text = os.environ.get(MAX_BACKOFF_ENV, "").strip()
    if not text:
        return MAX_BACKOFF
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.5 <= value <= 3600:
        raise ValidationError(f"{MAX_BACKOFF_ENV} must be a number of seconds from 0.5 to 3600, not {text!r}")
    return value


class Recorder:
    def __init__(
        self,
        store: DocumentStore,
        resolve_objects: Callable[[str], ObjectStore],
        outbox: Path,
        max_backoff: float | None = None,
    ) -> None:
        self.store = store
        self.records = Records(store)
        self.max_backoff = _max_backoff_from_env() if max_backoff is None else max_backoff
        self.resolve_objects = resolve_objects
        self.outbox = outbox
        self.outbox.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._revs: dict[str, str] = {}  # revision of each execution this worker inserted
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = 0
        self._deferrals: dict[str, int] = {}  # failed passes of each journaled log-URL write
        #: Journaled document writes, counted when last looked at; None: look again.  Only this
        #: process adds entries (and resets it then); the replay only removes them.
        self._pending_count: int | None = None
        self._queue: list[Execution] = []  # ends waiting for the writer
        self._queued = threading.Condition()
        self._writing = 0  # ends taken by the writer and not written yet
        #: Object stores that moved logs in since their last sync (see ObjectStore.sync).
        self._unsynced: dict[int, ObjectStore] = {}
        self._thread = threading.Thread(target=self._replay_loop, name="dcron-outbox", daemon=True)
        self._thread.start()
        self._writer = threading.Thread(target=self._write_loop, name="dcron-recorder", daemon=True)
        self._writer.start()

    def close(self) -> None:
        """Write (or journal) the queued ends, then stop."""
        self.flush(timeout=10.0)
        self._stop.set()
        self._wake.set()
        with self._queued:
            self._queued.notify_all()
        self._thread.join(timeout=5)
        self._writer.join(timeout=5)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every end queued by :meth:`complete_later` is written or journaled."""
        deadline = time.monotonic() + timeout
        with self._queued:
            while self._queue or self._writing:
                left = deadline - time.monotonic()
                if left <= 0 or not self._writer.is_alive():
                    return False
                self._queued.wait(left)
        return True

    def pending(self) -> int:
        """Writes not in the store yet: journaled writes and uploads, and queued ends."""
        with self._queued:
            queued = len(self._queue) + self._writing
        return queued + len(list(self.outbox.glob("*.json")))

    def _pending_writes(self) -> int:
        """Journaled document writes (not uploads): a new write must queue behind them."""
        count = self._pending_count
        if count is None or count > 0:
            count = sum(1 for path in self.outbox.glob("*.json") if not path.name.endswith(UPLOAD_SUFFIX))
            self._pending_count = count
        return count

    # -- the three writes of an execution's life ----------------------------------------------

    def create(self, execution: Execution) -> bool:
        """Insert the attempt's document.  ConflictError: someone else runs this attempt.

        Returns False when the store is unreachable and the insert was journaled.
        """
        if self._pending_writes() == 0:
            try:
                rev = self.records.create_execution(execution)
                with self._lock:
                    self._revs[execution.id] = rev
                return True
            except UnavailableError as exc:
                log.warning("document store unavailable, journaling %s: %s", execution.id, exc)
        self._journal({"op": "create", "id": execution.id, "doc": execution.to_doc()})
        return False

    def create_many(self, executions: list[Execution]) -> list[bool | ConflictError]:
        """Insert many attempts' documents in one bulk write: per attempt True, a ConflictError
        (someone else runs it), or False when the store is unreachable and the insert was journaled."""
        if self._pending_writes() == 0:
            try:
                results = self.records.create_executions(executions)
            except UnavailableError as exc:
                log.warning("document store unavailable, journaling %d new runs: %s", len(executions), exc)
            else:
                with self._lock:
                    for ex, result in zip(executions, results, strict=True):
                        if isinstance(result, str):
                            self._revs[ex.id] = result
                return [r if isinstance(r, ConflictError) else True for r in results]
        out: list[bool | ConflictError] = []
        for ex in executions:
            self._journal({"op": "create", "id": ex.id, "doc": ex.to_doc()})
            out.append(False)
        return out

    def complete_later(self, execution: Execution) -> None:
        """Queue the end of an attempt; the writer records it with the others queued meanwhile."""
        with self._queued:
            self._queue.append(execution)
            self._queued.notify_all()

    def _write_loop(self) -> None:
        while True:
            with self._queued:
                while not self._queue and not self._stop.is_set():
                    self._queued.wait(1.0)
                if not self._queue:
                    return
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                self._writing = len(batch)
            try:
                self._complete_batch(batch)
            except Exception:
                log.exception("recorder: writing %d ends failed; journaling them", len(batch))
                for ex in batch:
                    self._journal({"op": "complete", "id": ex.id, "doc": ex.to_doc()})
            finally:
                with self._queued:
                    self._writing = 0
                    self._queued.notify_all()

    def _sync_objects(self) -> None:
        """Make the logs moved so far durable before documents that name them are written."""
        with self._lock:
            stores, self._unsynced = list(self._unsynced.values()), {}
        for objects in stores:
            try:
                objects.sync()
            except Exception as exc:  # the logs are in place; only their durability is in doubt
                log.warning("could not flush the logs moved to %s to disk: %s", objects.base_url, exc)

    def _complete_batch(self, batch: list[Execution]) -> None:
        self._sync_objects()
        with self._lock:
            revs = [(ex, self._revs.pop(ex.id, None)) for ex in batch]
        known = [(ex, rev) for ex, rev in revs if rev is not None]
        rest = [ex for ex, rev in revs if rev is None]
        if known and self._pending_writes() == 0:
            try:
                results = self.records.update_executions(known)
            except UnavailableError as exc:
                log.warning("document store unavailable, journaling %d ends: %s", len(known), exc)
                for ex, _ in known:
                    self._journal({"op": "complete", "id": ex.id, "doc": ex.to_doc()})
            else:
                # Changed meanwhile (marked lost, log set): read each one and decide.
                rest += [ex for (ex, _), r in zip(known, results, strict=True) if not isinstance(r, str)]
        else:
            rest += [ex for ex, _ in known]
        for ex in rest:
            self.complete(ex)

    def complete(self, execution: Execution) -> None:
        """Record the end of an attempt (never overwrites another attempt's document)."""
        self._sync_objects()
        doc = execution.to_doc()
        op: dict[str, Any] = {"op": "complete", "id": execution.id, "doc": doc}
        with self._lock:
            rev = self._revs.pop(execution.id, None)
        if self._pending_writes() == 0:
            try:
                if rev is not None:
                    # The revision from our own insert: one write, no read, if nobody changed it.
                    try:
                        self.records.update_execution(execution, rev)
                        return
                    except ConflictError:
                        pass  # changed meanwhile (marked lost, log set): read it and decide
                self._apply(op)
                return
            except UnavailableError as exc:
                log.warning("document store unavailable, journaling %s: %s", execution.id, exc)
        self._journal(op)

    def upload_log(self, local_path: str, url: str, execution_id: str) -> bool:
        """Upload a log; on failure journal the upload (the file stays on disk) and return False."""
        op = {"op": "upload", "local": local_path, "url": url, "id": execution_id}
        try:
            objects = self.resolve_objects(url)
            objects.move_file(local_path, url)
            with self._lock:
                self._unsynced[id(objects)] = objects
            return True
        except UnavailableError as exc:
            log.warning(
                "object storage unavailable, keeping log %s on disk and retrying the upload: %s",
                local_path,
                exc,
                extra={"execution": execution_id},
            )
        self._journal(op)
        return False

    # -- journal ---------------------------------------------------------------------------------

    def _journal(self, op: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            suffix = UPLOAD_SUFFIX if op["op"] == "upload" else ".json"
            name = f"{time.time_ns():020d}-{self._seq:06d}{suffix}"
            tmp = self.outbox / f".{name}.tmp"
            tmp.write_text(json.dumps(op))
            os.replace(tmp, self.outbox / name)
            self._pending_count = None
        self._wake.set()

    def _apply(self, op: dict[str, Any]) -> None:
        kind = op["op"]
        if kind == "create":
            try:
                self.records.create_execution(Execution.from_doc(op["doc"]))
            except ConflictError:
                log.error("execution %s was recorded by another node while the store was down", op["id"])
        elif kind == "complete":
            self._complete_now(op["id"], op["doc"])
        elif kind == "upload":
            if self._deleted(op["id"]):
                # Retention deleted the execution meanwhile: its log would be an object no
                # document names.
                log.info("outbox: %s no longer exists; dropping its pending log upload", op["id"])
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(op["local"])
                self.resolve_objects(op["url"]).delete(op["url"])  # an earlier pass may have uploaded it
                return
            if os.path.exists(op["local"]):
                objects = self.resolve_objects(op["url"])
                objects.move_file(op["local"], op["url"])
                objects.sync()
            self._set_log(op["id"], op["url"])

    def _deleted(self, exec_id: str) -> bool:
        """Whether the execution was deleted: it is not there, every journaled document write
        is replayed, and its fire time is older than retention's grace for runs whose log is
        pending (:data:`~libdcron.retention.LOG_GRACE`): only then can retention have deleted it;
        a younger one may still be written (by a node whose store was down, say)."""
        try:
            fire = parse_instant(exec_id.rsplit("@", 1)[1].rsplit("#", 1)[0])
        except (IndexError, ValidationError):
            return False
        if utcnow() - fire < LOG_GRACE or self._pending_writes():
            return False
        try:
            self.records.execution(exec_id)
        except NotFoundError:
            return True
        return False

    def _complete_now(self, exec_id: str, doc: dict[str, Any]) -> None:
        final = Execution.from_doc(doc)

        def change(current: Execution | None) -> Execution | None:
            if current is None:
                return final
            if current.status.terminal:  # marked lost meanwhile: keep that record, with our log
                log.warning(
                    "execution %s was already marked %s; keeping that record",
                    exec_id,
                    current.status.value,
                    extra={"execution": exec_id},
                )
                if final.log and current.log != final.log:
                    return current.with_changes(log=final.log)
                return None
            if current.log and not final.log:
                return final.with_changes(log=current.log)
            return final

        try:
            self.records.change_execution(exec_id, change, pause=self._pause, tries=CONFLICT_RETRIES)
        except ConflictError:
            raise UnavailableError(f"could not complete {exec_id}: it changed under every write") from None

    def _set_log(self, exec_id: str, url: str) -> None:
        """Set the attempt's log URL, keeping everything else the document holds (a status another
        node recorded, its reason).  :class:`_LogPending` when it cannot be written yet."""

        def change(current: Execution | None) -> Execution | None:
            if current is None:
                raise _LogPending(f"execution {exec_id} does not exist (yet)")
            return None if current.log == url else current.with_changes(log=url)

        try:
            self.records.change_execution(exec_id, change, pause=self._pause, tries=CONFLICT_RETRIES)
        except ConflictError:
            raise _LogPending(f"execution {exec_id} changed under each of {CONFLICT_RETRIES} writes") from None

    def _pause(self, attempt: int) -> None:
        """A short, growing pause between writes that lost a race (0.01 s, 0.02 s, ... 0.1 s)."""
        self._stop.wait(min(0.1, 0.01 * (attempt + 1)))

    def _replay_loop(self) -> None:
        idle = 0.5  # how often an empty or healthy outbox is looked at
        backoff = Backoff(min(1.0, self.max_backoff), self.max_backoff)  # after failed passes
        delay = idle
        while not self._stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            files = sorted(self.outbox.glob("*.json"))
            if not files:
                backoff.reset()
                delay = idle
                continue
            blocked: UnavailableError | None = None  # a document write failed: stop the pass
            storage: UnavailableError | None = None  # an upload failed: skip the other uploads
            deferred = 0  # log URLs that could not be written yet: each is kept and retried
            kept = 0
            for path in files:
                if self._stop.is_set():
                    return
                is_upload = path.name.endswith(UPLOAD_SUFFIX)
                try:
                    op = json.loads(path.read_text())
                    is_upload = is_upload or (isinstance(op, dict) and op.get("op") == "upload")
                    if is_upload and storage is not None:
                        kept += 1
                        continue
                    self._apply(op)
                except _LogPending as exc:
                    if not is_upload:
                        blocked = exc
                        break
                    deferred += 1
                    tries = self._deferrals[path.name] = self._deferrals.get(path.name, 0) + 1
                    log.warning(
                        "outbox: the log URL of %s is not recorded yet (%d failed passes), keeping "
                        "it and retrying: %s",
                        op.get("id"),
                        tries,
                        exc,
                        extra={"execution": op.get("id")},
                    )
                    continue
                except UnavailableError as exc:
                    if is_upload:
                        storage, kept = exc, kept + 1
                        continue
                    blocked = exc
                    break
                except (DcronError, OSError, ValueError, KeyError, TypeError) as exc:
                    log.error("outbox: dropping unreadable or invalid entry %s: %s", path.name, exc)
                path.unlink(missing_ok=True)
                self._deferrals.pop(path.name, None)
            if blocked is None and storage is None and deferred == 0:
                backoff.reset()
                delay = idle
                log.info("outbox: replayed %d pending writes", len(files))
                continue
            delay = backoff.next()
            if blocked is not None:
                log.warning(
                    "outbox: still unavailable (%d pending), retrying in %.1fs: %s",
                    self.pending(),
                    delay,
                    blocked,
                )
            if storage is not None:
                log.warning(
                    "outbox: object storage still unavailable, %d log upload(s) waiting on disk, "
                    "retrying in %.1fs: %s",
                    kept,
                    delay,
                    storage,
                )
