"""The worker: accepts dispatched runs, fetches scripts, runs them, records what happened.

Life of one attempt on a worker:

1. ``DISPATCH`` arrives carrying one or many runs (job, fire instant, attempt).  A worker at its
   concurrency limit declines a run as busy.  It inserts the execution documents of the runs it
   takes (status ``running``, no start time yet) in one bulk write; a conflict means another
   worker already runs that very attempt, and that run is declined as a duplicate.
2. A preparing thread fetches the script into a local cache (:mod:`libdcron.scripts`) and stages
   the spawn: the run's working folder, its containment (:mod:`libdcron.proctree`: a cgroup where
   the host allows it, a new session, an environment marker), its log file, its command and
   environment.  The run then waits for its fire instant on a timer (the leader sends runs a little ahead so the
   process starts on time).
3. A spawning thread has a spawner helper (:mod:`libdcron.spawner`) start the interpreter, stdout
   and stderr interleaved into one pipe.
4. The worker's event loop (:mod:`libdcron.runloop`, one thread for every run) copies the pipe
   into the log file, capped in size with a visible marker, and sees the main process exit (a
   ``pidfd``); at the job's timeout it has the whole tree killed and ``timeout`` recorded.
5. Once the loop has seen both the exit and the end of the output, a finishing thread ends
   whatever the run left behind, uploads the log to object storage and completes the execution
   document (the recorder writes completions in batches).  While spawns are waiting (a burst of
   runs due at once), it lets them go first, for up to :data:`YIELD_TO_SPAWNS` seconds.

So a worker's threads are a fixed few (the loop and three small pools), whatever the number of
runs in flight.  Every store or storage failure is journaled by
:class:`~libdcron.recorder.Recorder`: nothing that ran goes unrecorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .abc import Interpreter, ObjectStore
from .errors import ConflictError, DcronError
from .metrics import Metrics
from .model import Execution, Status, execution_id, format_instant, log_key, utcnow
from .proctree import ProcessTree, node_key
from .recorder import Recorder
from .runloop import Pool, RunLoop
from .runs import KILL_GRACE, CappedLog, RunHandle, WorkDirs, kill_group
from .scripts import ScriptCache
from .spawner import RemoteProcess, Spawner
from .transport.messages import Dispatch, DispatchReply

log = logging.getLogger(__name__)

DEFAULT_LOG_CAP = 10 * 1024 * 1024
#: How long a run's log pipe may stay open after its process tree ended (something escaped).
DRAIN_WAIT = 5.0
#: How long after a run's main process exits its end waits on the loop for the end of its output.
EOF_WAIT = 0.05
#: How long a run's end may wait for the spawns asked for meanwhile (a burst of runs due at once
#: starts first; the ends, which nobody waits for, follow).
YIELD_TO_SPAWNS = 0.5
SPAWN_THREADS = 6
FINISH_THREADS = 8
#: Spawner helper processes (each starts one process at a time: a fork, then the child's exec).
SPAWNERS = 3


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
        use_spawner: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self.node_id = node_id
        #: Where this worker counts (its node's, or a private one).
        self.metrics = metrics or Metrics()
        self.recorder = recorder
        self.objects = objects
        self.resolve_objects = resolve_objects
        self.interpreters = interpreters
        self.work_dir = work_dir
        self.capacity = capacity
        self.log_cap = log_cap
        self.notify = notify
        self.incarnation = incarnation
        self.scripts = ScriptCache(work_dir / "scripts", resolve_objects)
        self.spool_dir = work_dir / "logs"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        #: The runs' working folders (each run's current directory, an empty one of its own).
        self.workdirs = WorkDirs(work_dir / "runs", keep=capacity)
        self._runs: dict[str, RunHandle] = {}
        self._lock = threading.Lock()
        self._stopping = False
        #: Contains each run's whole process tree (see :mod:`libdcron.proctree`).
        self.containment = containment or ProcessTree(
            node_key(work_dir, node_id), incarnation or uuid.uuid4().hex[:12]
        )
        #: The environment runs inherit, read once (``os.environ`` is slow to copy at every run).
        self._environ = dict(os.environ)
        self._loop = RunLoop("dcron-runs")
        #: Start the runs' processes from helper processes (see :mod:`libdcron.spawner`), in
        #: turn; empty once they cannot: runs are then spawned from this process.
        self._spawners = [Spawner(self._environ) for _ in range(SPAWNERS)] if use_spawner else []
        try:
            for spawner in self._spawners:
                spawner.start()  # ready before the first run is due
        except OSError as exc:
            log.warning("cannot start the spawner processes (%s); spawning runs from this process", exc)
            for spawner in self._spawners:
                spawner.close()
            self._spawners = []
        self._next_spawner = 0
        # Spawning and ending wait on the kernel (fork, cgroups, fsync) more than on Python.
        self._prepare = Pool(4, "dcron-prepare")
        self._spawn = Pool(SPAWN_THREADS, "dcron-spawn")
        self._finish = Pool(FINISH_THREADS, "dcron-finish")
        #: Notified when the last spawn asked for is answered (see :meth:`_yield_to_spawns`).
        self._spawns_done = threading.Condition()

    # -- dispatch ----------------------------------------------------------------------------

    def in_progress(self) -> int:
        """How many runs this worker holds (accepted and not recorded ended yet)."""
        return len(self._runs)

    def running(self) -> list[dict[str, Any]]:
        with self._lock:
            return [h.execution.with_changes(started=h.spawned).to_wire() for h in self._runs.values()]

    def read_log(self, exec_id: str, offset: int, length: int) -> tuple[bytes, int] | None:
        """Up to ``length`` bytes of a run in progress's spool log from ``offset``, and the log's
        size so far; ``(b"", 0)`` before its process started; ``None`` when this worker holds no
        such run, or its log is gone already (the run ended: the log is in object storage)."""
        with self._lock:
            handle = self._runs.get(exec_id)
        if handle is None:
            return None
        path = handle.log_path
        if path is None:
            return b"", 0
        try:
            with open(path, "rb") as file:  # still readable once open, even if moved away meanwhile
                size = os.fstat(file.fileno()).st_size
                if offset >= size:
                    return b"", size
                file.seek(offset)
                return file.read(min(length, size - offset)), size
        except FileNotFoundError:
            return (b"", 0) if handle.output is None else None  # not created yet, or moved away

    def dispatch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Handle a single-run DISPATCH body: see :meth:`accept`."""
        return self.accept(Dispatch.from_body(body))

    def accept(self, msg: Dispatch) -> dict[str, Any]:
        """Accept a parsed DISPATCH, or decline it as busy or as a duplicate."""
        return self.accept_many([msg])[0]

    def accept_many(self, msgs: list[Dispatch]) -> list[dict[str, Any]]:
        """Accept or decline each run; the accepted ones' documents are inserted in one write."""
        replies: list[dict[str, Any] | None] = [None] * len(msgs)
        new: list[tuple[int, RunHandle]] = []
        with self._lock:
            for i, msg in enumerate(msgs):
                exec_id = execution_id(msg.job.name, msg.fire_time, msg.attempt)
                if exec_id in self._runs:
                    replies[i] = DispatchReply(True, self.node_id).to_body()  # a retried DISPATCH
                elif self._stopping:
                    replies[i] = DispatchReply(False, reason="stopping").to_body()
                elif len(self._runs) >= self.capacity:
                    replies[i] = DispatchReply(False, reason="busy").to_body()
                else:
                    execution = Execution(
                        job=msg.job.name,
                        fire_time=msg.fire_time,
                        attempt=msg.attempt,
                        node=self.node_id,
                        status=Status.RUNNING,
                        manual=msg.manual,
                        incarnation=self.incarnation,
                    )
                    handle = RunHandle(execution, msg.job)
                    self._runs[exec_id] = handle
                    new.append((i, handle))
        try:
            results = self.recorder.create_many([h.execution for _, h in new]) if new else []
        except BaseException:
            with self._lock:
                for _, h in new:
                    self._runs.pop(h.execution.id, None)
            raise
        for (i, handle), result in zip(new, results, strict=True):
            if isinstance(result, ConflictError):
                with self._lock:
                    self._runs.pop(handle.execution.id, None)
                replies[i] = DispatchReply(False, duplicate=True).to_body()
                continue
            replies[i] = DispatchReply(True, self.node_id).to_body()
            ex = handle.execution
            log.info("accepted %s", ex.id, extra={"job": ex.job, "execution": ex.id})
            self._prepare.submit(self._prepared, handle)
        return [r or DispatchReply(False, reason="busy").to_body() for r in replies]

    # -- one run: prepare, wait, spawn ---------------------------------------------------------

    def _prepared(self, handle: RunHandle) -> None:
        """Look up the interpreter and fetch the script, then wait for the fire instant."""
        ex, job = handle.execution, handle.job
        try:
            interp = self.interpreters().get(job.interpreter)
            if interp is None:
                self._fail(handle, f"unknown interpreter {job.interpreter!r} on node {self.node_id}")
                return
            reason = interp.unavailable_reason()
            if reason:
                self._fail(handle, f"{reason} (node {self.node_id})")
                return
            try:
                handle.script = self.scripts.fetch(job, interp.suffix)
            except DcronError as exc:
                self._fail(handle, str(exc))
                return
            handle.interpreter = interp
            try:
                self._stage(handle)
            except OSError as exc:
                self._unstage(handle)
                self._fail(handle, f"cannot prepare the run's working folder or cgroup: {exc}")
                return
            delay = max(0.0, (ex.fire_time - utcnow()).total_seconds())
            with self._lock:
                if not handle.cancelled:
                    handle.start_timer = self._loop.call_at(
                        time.monotonic() + delay, lambda: self._spawn.submit(self._start, handle)
                    )
                    return
            self._lost_before_start(handle)
        except Exception as exc:
            log.exception("run %s crashed while preparing", ex.id)
            self._fail(handle, f"worker error: {exc!r}")
            return

    def _fail(self, handle: RunHandle, reason: str) -> None:
        ex = handle.execution
        log.warning("%s cannot start: %s", ex.id, reason, extra={"job": ex.job, "execution": ex.id})
        self._record(handle, ex.with_changes(status=Status.ERROR, ended=utcnow(), reason=reason))

    def _lost_before_start(self, handle: RunHandle) -> None:
        self._unstage(handle)
        ex = handle.execution
        self._record(handle, ex.with_changes(status=Status.LOST, ended=utcnow(), reason="node shut down before the start"))

    def _stage(self, handle: RunHandle) -> None:
        """Before the fire instant: everything the spawn needs (its working folder, its
        containment, command and environment), so that little is left to do at the instant."""
        ex, job = handle.execution, handle.job
        assert handle.interpreter is not None and handle.script is not None
        handle.workdir = self.workdirs.take()
        tree = handle.tree = self.containment.run()  # its cgroup, process group and marker
        # Its log file too: creating a file can take the kernel a millisecond (ext4 looking for
        # a free inode), which a burst of runs due at once would otherwise pay at the instant.
        handle.log_path = self.spool_dir / f"{hashlib.sha256(ex.id.encode()).hexdigest()[:24]}.log"
        handle.output = CappedLog(handle.log_path, self.log_cap)
        handle.argv = handle.interpreter.command(str(handle.script))
        handle.env = {
            "DCRON_JOB": job.name,
            "DCRON_FIRE_TIME": format_instant(ex.fire_time),
            "DCRON_EXECUTION_ID": ex.id,
            "DCRON_ATTEMPT": str(ex.attempt),
            "DCRON_NODE": self.node_id,
            **tree.env(),
        }

    def _unstage(self, handle: RunHandle) -> None:
        """Give back what :meth:`_stage` took, for a run that will not start.  Once: a stop and a
        start timer that fired just before it may both get here, and a folder given back twice
        would be handed to two runs."""
        with self._lock:
            tree, handle.tree = handle.tree, None
            output, handle.output = handle.output, None
            workdir, handle.workdir = handle.workdir, None
        if tree is not None:
            tree.close()
        if output is not None:
            output.close()
            assert handle.log_path is not None
            handle.log_path.unlink(missing_ok=True)
        if workdir is not None:
            self.workdirs.give_back(workdir)

    def _start(self, handle: RunHandle) -> None:
        """Spawn the run's process (a spawning thread), then hand its pipe and exit to the loop."""
        ex = handle.execution
        with self._lock:
            cancelled = handle.cancelled
            handle.started = not cancelled
        if cancelled:
            self._lost_before_start(handle)
            self._spawn_answered()
            return
        tree, argv, env = handle.tree, handle.argv, handle.env
        assert tree is not None and argv is not None and env is not None and handle.workdir is not None
        try:
            handle.spawned = utcnow()
            if self._spawners:
                self._next_spawner = (self._next_spawner + 1) % len(self._spawners)
                try:
                    cgroup = str(tree.cgroup) if tree.cgroup is not None else None
                    self._spawners[self._next_spawner].spawn(
                        argv, env, handle.workdir, cgroup, lambda p, e: self._spawned(handle, p, e)
                    )
                    return
                except OSError as exc:
                    log.warning("cannot use the spawner processes (%s); spawning runs from this process", exc)
                    self._spawners = []
            try:
                proc = tree.popen(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    cwd=handle.workdir,
                    env={**self._environ, **env},
                )
            except OSError as exc:
                self._spawned(handle, None, exc)
                return
            self._spawned(handle, proc, None)
        except Exception as exc:
            log.exception("run %s crashed while starting", ex.id)
            if handle.process is not None:
                kill_group(handle.process, handle.tree)
            else:
                self._unstage(handle)
            self._fail(handle, f"worker error: {exc!r}")
            self._spawn_answered()

    def _spawned(
        self, handle: RunHandle, proc: subprocess.Popen[bytes] | RemoteProcess | None, error: OSError | None
    ) -> None:
        """The run's process started (or could not): watch its output and its end."""
        ex, tree = handle.execution, handle.tree
        assert tree is not None
        self._spawn_answered()
        if proc is None:
            self._unstage(handle)
            self._fail(handle, f"cannot start {handle.job.interpreter}: {error}")
            return
        watched = False
        try:
            if isinstance(proc, RemoteProcess):
                tree.pgid = proc.pid  # a session leader, in its cgroup already
                if proc.cgroup_failed:
                    tree.detach_cgroup(f"a run could not join {tree.cgroup}")
            handle.process = proc
            if handle.spawned is not None:
                lag = (handle.spawned - ex.fire_time).total_seconds()
                self.metrics.run_start_lag.observe(max(0.0, lag))
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)
            if isinstance(proc, RemoteProcess):
                self._loop.call_soon(lambda: self._watch(handle, None))
                watched = True
                proc.when_exited(lambda: self._loop.call_soon(lambda: self._on_exit(handle, None)))
            else:
                pidfd = os.pidfd_open(proc.pid)  # (fails when out of file descriptors)
                self._loop.call_soon(lambda: self._watch(handle, pidfd))
                watched = True
        except Exception as exc:
            log.exception("run %s crashed while starting", ex.id)
            # Not on this thread: it may be the spawner's reader, which reports the exit waited for.
            self._finish.submit(self._abandon, handle, proc, watched, f"worker error: {exc!r}")

    def _abandon(
        self, handle: RunHandle, proc: subprocess.Popen[bytes] | RemoteProcess, watched: bool, reason: str
    ) -> None:
        """End a started run that the worker failed to take in hand, and record why."""
        kill_group(proc, handle.tree)
        if not watched:  # nothing else will end it: its pipe, log file and folder go now
            if proc.stdout is not None:
                with contextlib.suppress(OSError):
                    proc.stdout.close()
            self._unstage(handle)
        self._fail(handle, reason)

    # -- one run: the loop's callbacks (the loop's thread; never block) --------------------------

    def _watch(self, handle: RunHandle, pidfd: int | None) -> None:
        proc = handle.process
        assert proc is not None and proc.stdout is not None
        out = proc.stdout.fileno()
        self._loop.add_reader(out, lambda: self._on_output(handle, out))
        if pidfd is not None:  # (a spawner's process reports its end itself)
            self._loop.add_reader(pidfd, lambda: self._on_exit(handle, pidfd))
        if handle.job.timeout:
            handle.deadline = self._loop.call_at(
                time.monotonic() + handle.job.timeout, lambda: self._on_timeout(handle)
            )

    def _on_output(self, handle: RunHandle, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            assert handle.output is not None
            handle.output.write(chunk)
            return
        self._close_output(handle)

    def _close_output(self, handle: RunHandle) -> None:
        if handle.drained.is_set():
            return
        proc = handle.process
        assert proc is not None and proc.stdout is not None and handle.output is not None
        self._loop.remove_reader(proc.stdout.fileno())
        proc.stdout.close()
        handle.output.close()
        handle.drained.set()
        if handle.exited:
            self._submit_end(handle)

    def _on_exit(self, handle: RunHandle, pidfd: int | None) -> None:
        if pidfd is not None:
            self._loop.remove_reader(pidfd)
            os.close(pidfd)
        if handle.deadline is not None:
            handle.deadline.cancel()
        handle.exited = True
        if handle.drained.is_set():
            self._submit_end(handle)
        else:  # the pipe's end usually follows at once; if not, something the run left holds it
            handle.end_timer = self._loop.call_at(time.monotonic() + EOF_WAIT, lambda: self._submit_end(handle))

    def _submit_end(self, handle: RunHandle) -> None:
        """Hand the run's end to a finishing thread, once: when both its exit and the end of its
        output were seen (no finishing thread waits for the pipe), or :data:`EOF_WAIT` after the
        exit (the finishing thread then ends what holds the pipe)."""
        if handle.end_submitted:
            return
        handle.end_submitted = True
        if handle.end_timer is not None:
            handle.end_timer.cancel()
        self._finish.submit(self._end, handle)

    def _on_timeout(self, handle: RunHandle) -> None:
        proc = handle.process
        if proc is None or proc.poll() is not None:
            return
        handle.timed_out = True
        self._finish.submit(kill_group, proc, handle.tree)  # its exit then ends the run

    # -- one run: the end (a finishing thread) ---------------------------------------------------

    def _spawns_waiting(self) -> int:
        return self._spawn.backlog() + sum(s.waiting() for s in self._spawners)

    def _spawn_answered(self) -> None:
        """A spawn was answered: wake the ends waiting for the spawns once none is left."""
        with self._spawns_done:
            if not self._spawns_waiting():
                self._spawns_done.notify_all()

    def _yield_to_spawns(self) -> None:
        """Wait while spawns are waiting, for :data:`YIELD_TO_SPAWNS` seconds at most."""
        deadline = time.monotonic() + YIELD_TO_SPAWNS
        with self._spawns_done:
            while self._spawns_waiting() and (left := deadline - time.monotonic()) > 0:
                self._spawns_done.wait(left)

    def _end(self, handle: RunHandle) -> None:
        ex, job = handle.execution, handle.job
        proc, tree = handle.process, handle.tree
        assert proc is not None and tree is not None
        self._yield_to_spawns()
        try:
            code = proc.wait()
            if not handle.timed_out:
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
            if not handle.drained.wait(DRAIN_WAIT):  # a process that escaped holds the pipe open
                kill_group(proc, tree)
                if not handle.drained.wait(1.0):
                    self._loop.call_soon(lambda: self._close_output(handle))
                    handle.drained.wait(5.0)
            tree.end(None, KILL_GRACE)  # (a no-op when it has ended already)
            ended = utcnow()
            status, reason = Status.SUCCEEDED, None
            if handle.timed_out:
                status, reason = Status.TIMEOUT, f"killed after the job's timeout of {job.timeout}s"
            elif handle.cancelled:
                status, reason = Status.LOST, f"node {self.node_id} shut down mid-run"
            elif code != 0:
                status = Status.FAILED
                if code < 0:
                    reason = f"killed by signal {-code}"
            log_url = self.objects.url_for(log_key(job.name, ex.fire_time, ex.attempt))
            assert handle.log_path is not None
            uploaded = self.recorder.upload_log(str(handle.log_path), log_url, ex.id)
            if handle.workdir:
                self.workdirs.give_back(handle.workdir)
            final = ex.with_changes(
                status=status,
                started=handle.spawned,
                ended=ended,
                exit_code=code,
                reason=reason,
                log=log_url if uploaded else None,
            )
        except Exception as exc:  # never let a run end without a record
            log.exception("run %s crashed", ex.id)
            final = ex.with_changes(
                status=Status.ERROR, started=handle.spawned, ended=utcnow(), reason=f"worker error: {exc!r}"
            )
        self._record(handle, final)

    def _record(self, handle: RunHandle, final: Execution) -> None:
        """Record an attempt's end, once, and tell the leader."""
        ex = handle.execution
        with self._lock:
            if handle.done:
                return
            handle.done = True
        # Counted first: once the record can be read from the store, its end is already counted.
        self.metrics.run_ended(ex.job, final.status.value)
        if final.status is Status.LOST:
            self.metrics.lost_runs.inc()
        try:
            self.recorder.complete_later(final)  # written with the other ends queued meanwhile
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

    # -- shutdown ------------------------------------------------------------------------------

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting; kill runs still going after ``grace`` seconds and record them lost.
        A second call does nothing."""
        waiting: list[RunHandle] = []
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            for h in self._runs.values():
                if not h.started:
                    h.cancelled = True  # not started yet: recorded lost, so the leader runs it elsewhere
                    if h.start_timer is not None:
                        h.start_timer.cancel()
                        waiting.append(h)
        for h in waiting:
            self._finish.submit(self._lost_before_start, h)
        if not self._wait_idle(grace):
            with self._lock:
                handles = list(self._runs.values())
            for h in handles:
                h.cancelled = True
                if h.process is not None and (h.process.poll() is None or h.tree is not None):
                    kill_group(h.process, h.tree)  # the whole tree, even when the main process is gone
            self._wait_idle(10.0)
        for pool in (self._prepare, self._spawn, self._finish):
            pool.shutdown()
        self._loop.close()
        self.workdirs.close()
        for spawner in self._spawners:
            spawner.close()
        self.containment.close()

    def _wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._runs:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
