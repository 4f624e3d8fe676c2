"""The worker: accepts dispatched runs, fetches scripts, runs them, records what happened.

Life of one attempt on a worker:

1. ``DISPATCH`` arrives with the job, its fire instant and the attempt number.  A worker at its
   concurrency limit declines.  Otherwise it inserts the attempt's execution document (status
   ``running``); a conflict means another worker already runs this very attempt, and it declines
   as a duplicate.  Then it accepts.
2. It fetches the script into a local cache (keyed by location and version, or by sha256), checks
   the sha256 when the job has one, and waits for the fire instant (the leader sends runs a little
   ahead so the process starts on time).
3. It starts the interpreter contained (:mod:`libdcron.proctree`: a cgroup where the host allows
   it, a new session, an environment marker), with stdout and stderr interleaved into one log
   file, capped in size with a visible marker.
4. When the main process exits, whatever it left behind is ended; at the job's timeout the whole
   tree is killed and ``timeout`` recorded.
5. It uploads the log to object storage and completes the execution document.

Every store or storage failure is journaled by :class:`~libdcron.recorder.Recorder`: nothing that
ran goes unrecorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .abc import Interpreter, ObjectStore
from .backoff import Backoff, retry
from .errors import ConflictError, DcronError, NotFoundError, UnavailableError, ValidationError
from .model import Execution, Job, Status, execution_id, format_instant, utcnow
from .proctree import ProcessTree, RunTree, node_key
from .recorder import Recorder
from .transport.messages import Dispatch, DispatchReply

log = logging.getLogger(__name__)

DEFAULT_LOG_CAP = 10 * 1024 * 1024
KILL_GRACE = 2.0


@dataclass
class RunHandle:
    execution: Execution
    job: Job
    process: subprocess.Popen[bytes] | None = None
    cancelled: bool = False
    started: bool = False  # the process is being or has been spawned
    #: Set when the node stops: a run still waiting for its fire instant gives up at once.
    stopping: threading.Event = field(default_factory=threading.Event)


class Worker:
    def __init__(
        self,
        node_id: str,
        recorder: Recorder,
        objects: ObjectStore,
        resolve_objects: Callable[[str], ObjectStore],
        interpreters: Callable[[], Mapping[str, Interpreter]],
        work_dir: Path,
        capacity: int = 4,
        log_cap: int = DEFAULT_LOG_CAP,
        notify: Callable[[Execution], None] | None = None,
        incarnation: str | None = None,
        containment: ProcessTree | None = None,
    ) -> None:
        self.node_id = node_id
        self.recorder = recorder
        self.objects = objects
        self.resolve_objects = resolve_objects
        self.interpreters = interpreters
        self.work_dir = work_dir
        self.capacity = capacity
        self.log_cap = log_cap
        self.notify = notify
        self.incarnation = incarnation
        self.cache_dir = work_dir / "scripts"
        self.spool_dir = work_dir / "logs"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._runs: dict[str, RunHandle] = {}
        self._lock = threading.Lock()
        self._stopping = False
        #: Contains each run's whole process tree (see :mod:`libdcron.proctree`).
        self.containment = containment or ProcessTree(
            node_key(work_dir, node_id), incarnation or uuid.uuid4().hex[:12]
        )
        self._trees: dict[str, RunTree] = {}  # by execution id, while the process runs

    # -- dispatch ----------------------------------------------------------------------------

    def running(self) -> list[dict[str, Any]]:
        with self._lock:
            return [h.execution.to_wire() for h in self._runs.values()]

    def dispatch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Handle a DISPATCH body: see :meth:`accept`."""
        return self.accept(Dispatch.from_body(body))

    def accept(self, msg: Dispatch) -> dict[str, Any]:
        """Accept a parsed DISPATCH, or decline it as busy or as a duplicate."""
        job, fire_time, attempt = msg.job, msg.fire_time, msg.attempt
        exec_id = execution_id(job.name, fire_time, attempt)
        with self._lock:
            if exec_id in self._runs:
                return DispatchReply(True, self.node_id).to_body()  # a retried DISPATCH
            if self._stopping:
                return DispatchReply(False, reason="stopping").to_body()
            if len(self._runs) >= self.capacity:
                return DispatchReply(False, reason="busy").to_body()
            now = utcnow()
            execution = Execution(
                job=job.name,
                fire_time=fire_time,
                attempt=attempt,
                node=self.node_id,
                status=Status.RUNNING,
                started=max(now, fire_time),
                manual=msg.manual,
                incarnation=self.incarnation,
            )
            handle = RunHandle(execution, job)
            self._runs[exec_id] = handle
        try:
            self.recorder.create(execution)
        except ConflictError:
            with self._lock:
                self._runs.pop(exec_id, None)
            return DispatchReply(False, duplicate=True).to_body()
        except BaseException:
            with self._lock:
                self._runs.pop(exec_id, None)
            raise
        threading.Thread(target=self._run, args=(handle,), name=f"run-{exec_id}", daemon=True).start()
        log.info("accepted %s", exec_id, extra={"job": job.name, "execution": exec_id})
        return DispatchReply(True, self.node_id).to_body()

    # -- one run -------------------------------------------------------------------------------

    def _run(self, handle: RunHandle) -> None:
        ex = handle.execution
        try:
            final = self._execute(handle)
        except Exception as exc:  # never let a run thread die without a record
            log.exception("run %s crashed", ex.id)
            final = ex.with_changes(status=Status.ERROR, ended=utcnow(), reason=f"worker error: {exc!r}")
        try:
            self.recorder.complete(final)
        except DcronError as exc:
            log.error("could not record the end of %s: %s", ex.id, exc)
        finally:
            with self._lock:
                self._runs.pop(ex.id, None)
        log.info("finished %s: %s", ex.id, final.status.value, extra={"job": ex.job, "execution": ex.id})
        if self.notify is not None:
            # Tell the leader now, so the schedule goes on even while the store is unreachable.
            try:
                self.notify(final)
            except Exception as exc:
                log.info("could not tell the leader that %s ended (it will read the store): %s", ex.id, exc)

    def _fail(self, ex: Execution, reason: str) -> Execution:
        log.warning("%s cannot start: %s", ex.id, reason, extra={"job": ex.job, "execution": ex.id})
        return ex.with_changes(status=Status.ERROR, ended=utcnow(), reason=reason)

    def _execute(self, handle: RunHandle) -> Execution:
        ex, job = handle.execution, handle.job
        interp = self.interpreters().get(job.interpreter)
        if interp is None:
            return self._fail(ex, f"unknown interpreter {job.interpreter!r} on node {self.node_id}")
        reason = interp.unavailable_reason()
        if reason:
            return self._fail(ex, f"{reason} (node {self.node_id})")
        try:
            script = self._fetch_script(job, interp.suffix)
        except DcronError as exc:
            return self._fail(ex, str(exc))
        delay = (ex.fire_time - utcnow()).total_seconds()
        if (delay > 0 and handle.stopping.wait(delay)) or handle.cancelled:
            return ex.with_changes(
                status=Status.LOST, ended=utcnow(), reason="node shut down before the start"
            )
        return self._spawn(handle, interp, script)

    def _fetch_script(self, job: Job, suffix: str) -> Path:
        store = self.resolve_objects(job.script)
        if job.script_sha256:
            key = job.script_sha256
        else:
            info = self._with_retries(lambda: store.stat(job.script), f"script {job.script}")
            key = hashlib.sha256(f"{job.script}\0{info.version}".encode()).hexdigest()
        path = self.cache_dir / f"{key}{suffix}"
        if path.exists():
            return path
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".fetch-")
        os.close(fd)
        try:
            self._with_retries(lambda: store.get_file(job.script, tmp), f"script {job.script}")
            if job.script_sha256:
                digest = _sha256_file(tmp)
                if digest != job.script_sha256:
                    raise ValidationError(
                        f"script {job.script} has sha256 {digest}, but the job expects {job.script_sha256}; "
                        "re-register the job with the new script"
                    )
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @staticmethod
    def _with_retries(call: Callable[[], Any], what: str, tries: int = 4) -> Any:
        try:
            return retry(call, (UnavailableError,), backoff=Backoff(0.5, 4.0), tries=tries)
        except NotFoundError:
            raise NotFoundError(f"{what} not found in object storage") from None
        except UnavailableError as exc:
            raise UnavailableError(f"object storage unavailable while fetching {what}: {exc}") from None

    def _spawn(self, handle: RunHandle, interp: Interpreter, script: Path) -> Execution:
        ex, job = handle.execution, handle.job
        log_path = self.spool_dir / f"{hashlib.sha256(ex.id.encode()).hexdigest()[:24]}.log"
        env = {
            **os.environ,
            "DCRON_JOB": job.name,
            "DCRON_FIRE_TIME": format_instant(ex.fire_time),
            "DCRON_EXECUTION_ID": ex.id,
            "DCRON_ATTEMPT": str(ex.attempt),
            "DCRON_NODE": self.node_id,
        }
        with self._lock:
            if handle.cancelled:
                return ex.with_changes(
                    status=Status.LOST, ended=utcnow(), reason="node shut down before the start"
                )
            handle.started = True
        workdir = tempfile.mkdtemp(prefix="dcron-run-")
        tree = self.containment.run()  # its cgroup, process group and marker
        started = utcnow()
        try:
            proc = tree.popen(
                interp.command(str(script)),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
            )
        except OSError as exc:
            tree.close()
            _rmtree(workdir)
            return self._fail(ex, f"cannot start {job.interpreter}: {exc}")
        with self._lock:
            self._trees[ex.id] = tree
        handle.process = proc
        try:
            assert proc.stdout is not None
            copier = threading.Thread(
                target=_copy_capped, args=(proc.stdout, log_path, self.log_cap), daemon=True
            )
            copier.start()
            status, reason = Status.SUCCEEDED, None
            try:
                code = proc.wait(timeout=job.timeout or None)
            except subprocess.TimeoutExpired:
                _kill_group(proc, tree)
                code = proc.returncode
                status, reason = Status.TIMEOUT, f"killed after the job's timeout of {job.timeout}s"
            else:
                # The run ends with its main process: whatever it left behind (detached, in
                # another session, double-forked) is ended now, which also closes the log pipe.
                left = tree.end(None, KILL_GRACE)
                if left:
                    log.info(
                        "%s: ended %d process(es) the run left behind",
                        ex.id,
                        len(left),
                        extra={"job": job.name, "execution": ex.id},
                    )
            copier.join(timeout=5)
            if copier.is_alive():  # a process that escaped the containment holds the log pipe open
                _kill_group(proc, tree)
                copier.join()
        finally:
            with self._lock:
                self._trees.pop(ex.id, None)
            tree.end(None, KILL_GRACE)  # (a no-op when it has ended already)
        ended = utcnow()
        if handle.cancelled and status is not Status.TIMEOUT:
            status, reason = Status.LOST, f"node {self.node_id} shut down mid-run"
        elif status is Status.SUCCEEDED and code != 0:
            status = Status.FAILED
            if code is not None and code < 0:
                reason = f"killed by signal {-code}"
        log_url = self.objects.url_for(f"logs/{job.name}/{format_instant(ex.fire_time)}/{ex.attempt}.log")
        uploaded = self.recorder.upload_log(str(log_path), log_url, ex.id)
        _rmtree(workdir)
        return ex.with_changes(
            status=status,
            started=started,
            ended=ended,
            exit_code=code,
            reason=reason,
            log=log_url if uploaded else None,
        )

    # -- shutdown ------------------------------------------------------------------------------

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting; kill runs still going after ``grace`` seconds and record them lost."""
        with self._lock:
            self._stopping = True
            for h in self._runs.values():
                if not h.started:
                    h.cancelled = True  # not started yet: recorded lost, so the leader runs it elsewhere
                    h.stopping.set()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._lock:
                if not self._runs:
                    self.containment.close()
                    return
            time.sleep(0.1)
        with self._lock:
            handles = [(h, self._trees.get(h.execution.id)) for h in self._runs.values()]
        for h, tree in handles:
            h.cancelled = True
            if h.process is not None and (h.process.poll() is None or tree is not None):
                _kill_group(h.process, tree)  # the whole tree, even when the main process is gone
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self._lock:
                if not self._runs:
                    break
            time.sleep(0.1)
        self.containment.close()


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_capped(stream: Any, log_path: Path, cap: int) -> None:
    """Copy the process's output to ``log_path``; past ``cap`` bytes, count and discard."""
    written = dropped = 0
    with open(log_path, "wb") as out:
        fd = stream.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            room = cap - written
            if room > 0:
                out.write(chunk[:room])
                written += min(room, len(chunk))
            dropped += max(0, len(chunk) - max(room, 0))
        if dropped:
            out.write(f"\n[dcron: log truncated at {cap} bytes; {dropped} more bytes discarded]\n".encode())
    stream.close()


def _kill_group(proc: subprocess.Popen[bytes], tree: RunTree | None) -> None:
    """End the run's whole process tree and reap its main process.

    SIGTERM to the run's process group, its cgroup and every process carrying its marker, then,
    after a grace period if any is still alive, SIGKILL to all of them (see
    :meth:`RunTree.end <libdcron.proctree.RunTree.end>`).  Without a tree: the process group only.
    """
    if tree is not None:
        tree.end(proc, KILL_GRACE)
        proc.wait()
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
