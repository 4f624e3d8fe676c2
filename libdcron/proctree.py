"""Containment of a run's process tree: nothing a run starts outlives the run.

A script can leave processes behind in many ways: ``cmd >/dev/null 2>&1 &``, ``setsid``, a double
fork, ``nohup``.  Killing the run's process group misses every process that left the group, and
when dcrond itself is SIGKILLed nothing is killed at all: the runs live on as orphans next to their
retries on other nodes.  So every run is contained three ways at once, and ending a run signals the
union of the three:

1. **A cgroup v2**, ``<mount>/dcron/<node-key>/<incarnation>/<run-token>``, where the host allows
   it (:mod:`libdcron.cgroup`: where the mount is, how the run's main process is held at a gate
   until its pid is in the cgroup, how a cgroup is killed and removed).  So every process of the
   run is a member, whatever its session or environment; only a privileged process can move out.
   When no cgroup can be made (no cgroup2, no permission) the tree falls back to the other two
   mechanisms and says so once, at debug level.
2. **The run's own session and process group** (``start_new_session=True``).
3. **An environment marker**: every run gets ``DCRON_RUN_MARKER=<node-key>:<incarnation>:<run-token>``,
   which everything it starts inherits.  A sweep reads ``/proc/*/environ`` (processes that are
   unreadable or gone are skipped) and finds those processes even when they left the group.  A
   process that execs itself with a cleared environment loses the marker (not its cgroup).

Ending a run (its main process exited, its timeout passed, or the node stops): SIGTERM to the group,
to the cgroup's members and to the marked processes; if any of them is still alive, wait up to the
grace the caller gives (the worker's 2 s); then SIGKILL all of them, again and again until none is
left (for at most :data:`KILL_DEADLINE` seconds: a process stuck in the kernel cannot be killed).

**After a crash.**  The node key (a hash of the node's data folder and node id, see :func:`node_key`)
is the same for the next process of the same node; the incarnation is not.  At start-up,
:meth:`ProcessTree.sweep_leftovers` SIGKILLs every process in a leftover cgroup under the node's
folder and every process marked with the node key and another incarnation, removes those cgroups,
and returns how many processes it killed.  Processes of other node keys, and of the current
incarnation, are left alone.

**No PR_SET_PDEATHSIG.**  It would have the kernel kill the direct child the moment dcrond dies, but
it must be set in the child between fork and exec, that is in a ``preexec_fn``.  CPython documents
``preexec_fn`` as not safe in a program with threads (dcrond has ZeroMQ, leader, run and log
threads): the child runs the at-fork hooks and Python code, and a ctypes call that can need a lock
(the dynamic loader's, say) that another thread held at fork time, which deadlocks the child.  It
also turns every spawn from a ``vfork`` into a full ``fork`` of the daemon, taken with the GIL held
(measured on this 2-core machine at 200 MB resident: 1.7 ms -> 9.2 ms per spawn).  And it would only
cover the direct child, not what it forks.  The start-up sweep covers them all, a restart later.

Pids found by a sweep are signalled a moment after they were read, and the group by its number
(reserved while any member lives), so a pid reused in that instant could be hit; the kernel hands
pids out in order, which makes that reuse unlikely.  A sweep reads every process's environment,
about 4 us a process: one sweep ends a run that left nothing behind, and with a cgroup not even
that (one read of its ``cgroup.procs``: a process leaves a cgroup only with privileges; the
start-up sweep still finds one that did by its marker).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .cgroup import (
    CGROUP_FOLDER,
    cgroup2_mount,
    cgroup_descendants,
    cgroup_pids,
    kill_cgroup,
    leftover_cgroups,
    popen_gated,
    remove_cgroup,
    write_control,
)
from .cgroup import GATE as GATE  # re-exported: proctree was its home

log = logging.getLogger(__name__)


class MainProcess(Protocol):
    """A run's main process: a ``subprocess.Popen``, or a process a spawner started."""

    pid: int

    def poll(self) -> int | None: ...

MARKER_VAR = "DCRON_RUN_MARKER"
#: How long the SIGKILL rounds go on before giving up on a process that does not die.
KILL_DEADLINE = 5.0
_POLL = 0.02
#: Empty cgroups of ended runs kept for the next runs (each run otherwise makes and removes one).
FREE_CGROUPS = 1024


def node_key(data_dir: str | os.PathLike[str], node_id: str) -> str:
    """A key that stays the same for every incarnation of one node on this host."""
    text = f"{os.path.realpath(data_dir)}\0{node_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def marked_pids(match: Callable[[str], bool]) -> set[int]:
    """Pids of live processes (not this one) whose environment has a marker ``match`` accepts."""
    me = os.getpid()
    prefix = f"{MARKER_VAR}=".encode()
    pids: set[int] = set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return pids
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                data = handle.read()
        except OSError:  # gone, or not ours to read
            continue
        if prefix not in data:  # a zombie's environment reads empty
            continue
        for entry in data.split(b"\0"):
            if entry.startswith(prefix):
                if match(entry[len(prefix) :].decode(errors="replace")):
                    pids.add(int(name))
                break
    return pids


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _signal_group(pgid: int | None, sig: int) -> None:
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


class ProcessTree:
    """The containment of every run of one incarnation of one node.

    ``node_key`` must be stable across restarts of the node (see :func:`node_key`), ``incarnation``
    unique to this process.  ``cgroups=False`` uses the process group and the marker only;
    ``cgroup_mount`` overrides where cgroup2 is looked for (default: ``/proc/self/mounts``).
    """

    def __init__(
        self,
        node_key: str,
        incarnation: str,
        *,
        cgroups: bool = True,
        cgroup_mount: Path | None = None,
    ) -> None:
        if not all(re.fullmatch(r"[A-Za-z0-9_.-]+", part) for part in (node_key, incarnation)):
            raise ValueError("node_key and incarnation must be letters, digits, '_', '.' or '-'")
        self.node_key = node_key
        self.incarnation = incarnation
        mount = (cgroup_mount or cgroup2_mount()) if cgroups else None
        #: ``<mount>/dcron/<node-key>``, when cgroups are to be tried.
        self.node_cgroup: Path | None = mount / CGROUP_FOLDER / node_key if mount else None
        self._incarnation_cgroup: Path | None = None
        self._free: list[Path] = []  # empty cgroups of ended runs, for the next runs
        self._cgroups_off = False
        self._lock = threading.Lock()
        if self.node_cgroup is None:
            self._off("cgroups disabled" if not cgroups else "no cgroup2 mount")

    @property
    def uses_cgroups(self) -> bool:
        """Whether runs are (still) put in cgroups; False once making or joining one failed."""
        return not self._cgroups_off

    def _off(self, reason: str) -> None:
        """Stop using cgroups for this node's runs; say so once."""
        if not self._cgroups_off:
            self._cgroups_off = True
            log.debug("runs are contained without cgroups (%s): process group and marker only", reason)

    def run(self, token: str | None = None) -> RunTree:
        """The containment of one new run: an empty cgroup of an ended run when there is one
        (making and removing a cgroup costs the kernel milliseconds), else a new one."""
        if token is None:
            with self._lock:
                if self._free and not self._cgroups_off:
                    path = self._free.pop()
                    return RunTree(self, f"{self.node_key}:{self.incarnation}:{path.name}", path)
            token = secrets.token_hex(8)
        return RunTree(self, f"{self.node_key}:{self.incarnation}:{token}", self._make_cgroup(token))

    def _release(self, path: Path) -> bool:
        """Keep the empty cgroup of an ended run for the next run; False when enough are kept."""
        with self._lock:
            if len(self._free) >= FREE_CGROUPS or self._incarnation_cgroup != path.parent:
                return False
            self._free.append(path)
            return True

    def _make_cgroup(self, token: str) -> Path | None:
        with self._lock:
            if self._cgroups_off or self.node_cgroup is None:
                return None
            try:
                if self._incarnation_cgroup is None:
                    folder = self.node_cgroup / self.incarnation
                    folder.mkdir(parents=True, exist_ok=True)
                    self._incarnation_cgroup = folder
                path = self._incarnation_cgroup / token
                path.mkdir()
            except OSError as exc:
                self._off(f"cannot make a cgroup under {self.node_cgroup}: {exc}")
                return None
            return path

    def sweep_leftovers(self) -> int:
        """Kill what an earlier incarnation of this node left running; return how many processes.

        That is every process in a cgroup of another incarnation under this node's folder, and every
        process whose marker has this node key and another incarnation; those cgroups are removed.
        """
        leftovers = leftover_cgroups(self.node_cgroup, self.incarnation)
        killed: set[int] = set()
        for path in leftovers:
            killed |= cgroup_pids(path)
            kill_cgroup(path)
        mine, ours = f"{self.node_key}:{self.incarnation}:", f"{self.node_key}:"

        def stale(marker: str) -> bool:
            return marker.startswith(ours) and not marker.startswith(mine)

        deadline = time.monotonic() + KILL_DEADLINE
        while True:
            pids = marked_pids(stale)
            for path in leftovers:
                pids |= cgroup_pids(path)
            pids.discard(os.getpid())
            if not pids:
                break
            killed |= pids
            if time.monotonic() > deadline:
                log.warning("processes of an earlier incarnation would not die: %s", sorted(pids))
                break
            for pid in pids:
                _signal(pid, signal.SIGKILL)
            time.sleep(0.01)
        for path in leftovers:
            while not remove_cgroup(path) and time.monotonic() < deadline:
                time.sleep(_POLL)
        if leftovers and self.node_cgroup is not None:
            with contextlib.suppress(OSError):
                self.node_cgroup.rmdir()  # made again by the first run, if empty now
        return len(killed)

    def close(self) -> None:
        """Remove this incarnation's cgroups, and the node's folder if that leaves it empty.

        A cgroup still holding processes stays (for the next start-up sweep).
        """
        with self._lock:
            self._free.clear()
            if self._incarnation_cgroup is not None:
                remove_cgroup(self._incarnation_cgroup)
                self._incarnation_cgroup = None
            if self.node_cgroup is not None:
                with contextlib.suppress(OSError):
                    self.node_cgroup.rmdir()


class RunTree:
    """The processes of one run: its cgroup (if any), its process group, its marker."""

    def __init__(self, tree: ProcessTree, marker: str, cgroup: Path | None) -> None:
        self.tree = tree
        self.marker = marker
        #: The run's cgroup, or None when it runs without one.
        self.cgroup = cgroup
        self.pgid: int | None = None
        self._ended = False
        self._lock = threading.Lock()

    def env(self) -> dict[str, str]:
        """What to add to the run's environment."""
        return {MARKER_VAR: self.marker}

    def popen(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: str | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start the run's main process, contained, in a new session, with stdin from /dev/null.

        Raises :class:`OSError` as ``Popen`` does when the command cannot be started.
        """
        env = {**env, **self.env()}
        if self.cgroup is None:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
            self.attach(proc.pid)
            return proc
        return popen_gated(argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr, attach=self.attach)

    def attach(self, pid: int) -> None:
        """Contain the run's main process ``pid``, a session leader (:meth:`popen` calls this)."""
        self.pgid = pid
        if self.cgroup is None:
            return
        try:
            write_control(self.cgroup / "cgroup.procs", str(pid))
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return  # already gone; whatever it forked carries the marker
            self.tree._off(f"cannot move a process into {self.cgroup}: {exc}")
            remove_cgroup(self.cgroup)
            self.cgroup = None

    def detach_cgroup(self, reason: str) -> None:
        """The run's process could not join its cgroup: contain it without one, and stop using
        cgroups for this node's runs (as :meth:`attach` does when the move fails)."""
        self.tree._off(reason)
        if self.cgroup is not None:
            remove_cgroup(self.cgroup)
            self.cgroup = None

    def members(self) -> set[int]:
        """Live processes of the run found by its cgroup or its marker."""
        pids = marked_pids(self.marker.__eq__)
        if self.cgroup is not None:
            pids |= cgroup_pids(self.cgroup)
        pids.discard(os.getpid())
        return pids

    def _first_look(self) -> set[int]:
        """The run's live processes as its cgroup has them, else as the marker sweep finds them.

        With a cgroup the usual end of a run (nothing left behind) costs one read of
        ``cgroup.procs`` instead of a sweep of every process's environment: a process cannot
        leave its cgroup without privileges.  Once anything is found, ending uses both.
        """
        if self.cgroup is not None:
            pids = cgroup_pids(self.cgroup)
            pids.discard(os.getpid())
            return pids
        return self.members()

    def end(self, main: MainProcess | None = None, grace: float = 2.0) -> set[int]:
        """End every process of the run: SIGTERM, up to ``grace`` seconds if any lives on, SIGKILL.

        ``main`` is the run's main process, if it may still be running.  Returns the pids signalled
        (the main process among them while it was alive).  Safe to call again, and from two threads:
        once a call found nothing left, later ones return at once.
        """
        with self._lock:
            pids = set() if self._ended else self._first_look()
            if not pids and (main is None or main.poll() is not None):
                # The usual end of a run, nothing left behind: one sweep.  A process of the group
                # that is neither in the cgroup nor marked still gets its SIGKILL.
                if not self._ended:
                    _signal_group(self.pgid, signal.SIGKILL)
                    self._ended = True
                self.close(seen_empty=self.cgroup is not None)
                return pids
            _signal_group(self.pgid, signal.SIGTERM)
            for pid in pids:
                _signal(pid, signal.SIGTERM)

            def alive() -> bool:
                return (main is not None and main.poll() is None) or bool(self.members())

            if alive():
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline:
                    time.sleep(_POLL)
                    if not alive():
                        break
            _signal_group(self.pgid, signal.SIGKILL)
            if self.cgroup is not None:
                kill_cgroup(self.cgroup)
            deadline = time.monotonic() + KILL_DEADLINE
            while left := self.members():
                pids |= left
                if time.monotonic() > deadline:
                    log.warning("processes of run %s would not die: %s", self.marker, sorted(left))
                    break
                for pid in left:
                    _signal(pid, signal.SIGKILL)
                time.sleep(0.01)
            else:
                self._ended = True
            self.close()
            return pids

    def close(self, seen_empty: bool = False) -> None:
        """Give the run's cgroup back for another run, or remove it (once empty); the run must
        have ended.  ``seen_empty``: its ``cgroup.procs`` was just read empty."""
        if self.cgroup is not None:
            if _reusable(self.cgroup, seen_empty) and self.tree._release(self.cgroup):
                self.cgroup = None
                return
            deadline = time.monotonic() + 1.0
            while not remove_cgroup(self.cgroup):
                if time.monotonic() > deadline:
                    log.debug("cannot remove %s (still in use)", self.cgroup)
                    return
                time.sleep(_POLL)
            self.cgroup = None


def _reusable(path: Path, seen_empty: bool = False) -> bool:
    """Whether the cgroup ``path`` is empty: no process, no child cgroup (a run may make some)."""
    try:
        if not seen_empty and cgroup_pids(path):
            return False
        below = cgroup_descendants(path)
        if below is not None:
            return below == 0
        return not any(entry.is_dir(follow_symlinks=False) for entry in os.scandir(path))
    except OSError:
        return False
