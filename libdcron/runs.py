"""One run on a worker: its handle (process, timers, containment, log) and how it is ended.

:class:`RunHandle` is what :class:`~libdcron.worker.Worker` keeps of an attempt from the moment it
accepts it until its end is recorded; :class:`CappedLog` is the run's log file, capped in size with
a visible marker; :class:`WorkDirs` hands out the runs' working folders; :func:`kill_group` ends a
run's whole process tree.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import stat
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from .abc import Interpreter
from .model import Execution, Job
from .proctree import RunTree
from .runloop import Timer
from .spawner import RemoteProcess

KILL_GRACE = 2.0


@dataclass(eq=False)
class RunHandle:
    execution: Execution
    job: Job
    process: subprocess.Popen[bytes] | RemoteProcess | None = None
    cancelled: bool = False
    started: bool = False  # the process is being or has been spawned
    timed_out: bool = False
    done: bool = False  # its end is being recorded
    interpreter: Interpreter | None = None
    script: Path | None = None
    start_timer: Timer | None = None  # set once prepared: waits for the fire instant
    deadline: Timer | None = None  # the job's timeout
    tree: RunTree | None = None
    workdir: str | None = None
    argv: list[str] | None = None  # the command, staged with the rest before the fire instant
    env: dict[str, str] | None = None  # what the run adds to the worker's environment
    log_path: Path | None = None
    output: CappedLog | None = None
    spawned: datetime | None = None  # when the process was spawned
    exited: bool = False  # its main process ended (the loop saw it)
    end_timer: Timer | None = None  # ends the run if its log pipe stays open after the exit
    end_submitted: bool = False  # handed to a finishing thread
    drained: threading.Event = field(default_factory=threading.Event)


class CappedLog:
    """A run's log file, each chunk written through as it comes: past ``cap`` bytes, output is
    counted and discarded."""

    def __init__(self, path: Path, cap: int) -> None:
        self.file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.cap = cap
        self.written = self.dropped = 0

    def write(self, chunk: bytes) -> None:
        room = self.cap - self.written
        if room > 0:
            self.file.write(chunk[:room])
            self.file.flush()  # written through: TAIL reads the file while the run goes on
            self.written += min(room, len(chunk))
        self.dropped += max(0, len(chunk) - max(room, 0))

    def close(self) -> None:
        if self.dropped:
            self.file.write(
                f"\n[dcron: log truncated at {self.cap} bytes; {self.dropped} more bytes discarded]\n".encode()
            )
        self.file.close()


def kill_group(proc: subprocess.Popen[bytes] | RemoteProcess, tree: RunTree | None) -> None:
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


def rmtree(path: str) -> None:
    """Remove a folder and what it holds; an empty one (a run's usual working folder) with one
    ``rmdir``, which is most of the cost of ``shutil.rmtree`` saved at hundreds of runs a second."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


class WorkDirs:
    """The runs' working folders, under ``root``: each run starts in an empty folder of its own
    (mode 0700), which its end gives back.  A folder left as it was given (empty, 0700) is kept
    for a later run; any other is removed.  At hundreds of runs a second this spares the kernel
    a ``mkdir`` and an ``rmdir`` per run.  What an earlier process left under ``root`` is
    removed when this one starts.

    Up to ``keep`` free folders are kept (at least :data:`KEEP`; a worker passes its capacity, so
    that a burst of runs due at once finds its folders made by the burst before)."""

    KEEP = 64

    def __init__(self, root: Path, keep: int = KEEP) -> None:
        self.root = root
        self.keep = max(keep, self.KEEP)
        rmtree(str(root))
        root.mkdir(parents=True, exist_ok=True)
        self._free: list[str] = []
        self._lock = threading.Lock()
        self._names = itertools.count(1)

    def take(self) -> str:
        with self._lock:
            if self._free:
                return self._free.pop()
            path = os.path.join(self.root, str(next(self._names)))
        os.mkdir(path, 0o700)
        return path

    def give_back(self, path: str) -> None:
        try:
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o700:
                with os.scandir(path) as entries:
                    empty = next(entries, None) is None
                if empty:
                    with self._lock:
                        if len(self._free) < self.keep:
                            self._free.append(path)
                            return
        except OSError:
            pass
        rmtree(path)

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for path in free:
            rmtree(path)
