"""Containment of a run's process tree: nothing a run starts outlives the run.

A script can leave processes behind in many ways: ``cmd >/dev/null 2>&1 &``, ``setsid``, a double
fork, ``nohup``.  Killing the run's process group misses every process that left the group, and
when dcrond itself is SIGKILLed nothing is killed at all: the runs live on as orphans next to their
retries on other nodes.  So every run is contained three ways at once, and ending a run signals the
union of the three:

1. **A cgroup v2**, ``<mount>/dcron/<node-key>/<incarnation>/<run-token>``, where the host allows
   it.  The mount is the read-write ``cgroup2`` entry of ``/proc/self/mounts`` (``/sys/fs/cgroup``,
   or ``/sys/fs/cgroup/unified`` on a hybrid host).  The child's pid is written into the run's
   ``cgroup.procs`` as soon as ``Popen`` returns, and the child cannot fork before that: it starts
   as ``/bin/sh -c 'read -r x || exit 125; exec "$@" </dev/null' dcron-run COMMAND...``, which waits
   for one line on its stdin (a pipe that :meth:`RunTree.popen` writes to once the pid is in the
   cgroup) and then execs the command in the same process.  Without that gate an ``sh`` script
   forks its first children before the parent's write, measured here; the gate costs one ``sh``
   exec, about 1 ms a spawn.  So every process of the run is a member, whatever its session or
   environment; only a privileged process can move out (``systemd-run --scope`` does: the marker
   still finds those).  These cgroups are outside dcrond's own: a service manager that stops
   dcrond by killing its cgroup does not reach them, which is one more reason for the sweep below.
   Ending: ``cgroup.kill`` (Linux >= 5.14, atomic even against a fork bomb), else SIGKILL to every
   pid of ``cgroup.procs`` until it is empty; then the cgroup is removed.  When no cgroup can be
   made (no cgroup2, no permission) the tree falls back to the other two mechanisms and says so
   once, at debug level.
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
about 4 us a process: one sweep ends a run that left nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MARKER_VAR = "DCRON_RUN_MARKER"
#: The folder under the cgroup2 mount that holds every node's cgroups.
CGROUP_FOLDER = "dcron"
#: How long the SIGKILL rounds go on before giving up on a process that does not die.
KILL_DEADLINE = 5.0
_POLL = 0.02
#: Runs as the run's main process until its pid is in the cgroup, then execs the command.
GATE = 'read -r x || exit 125; exec "$@" </dev/null'
_PREFERRED_MOUNTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))


def node_key(data_dir: str | os.PathLike[str], node_id: str) -> str:
    """A key that stays the same for every incarnation of one node on this host."""
    text = f"{os.path.realpath(data_dir)}\0{node_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cgroup2_mount(mounts: str = "/proc/self/mounts") -> Path | None:
    """Where cgroup v2 is mounted read-write (``/sys/fs/cgroup`` preferred), or None."""
    try:
        text = Path(mounts).read_text()
    except OSError:
        return None
    found: list[Path] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup2" and "rw" in fields[3].split(","):
            found.append(Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])))
    for preferred in _PREFERRED_MOUNTS:
        if preferred in found:
            return preferred
    return found[0] if found else None


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


def _cgroup_pids(path: Path) -> set[int]:
    """Pids in the cgroup ``path`` and its descendants (exited ones are no longer listed)."""
    pids: set[int] = set()
    for folder, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(p) for p in Path(folder, "cgroup.procs").read_text().split())
    return pids


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _cgroup_kill(path: Path) -> None:
    """Kill every process of the cgroup ``path`` and its descendants, at once where the kernel can."""
    try:
        _write(path / "cgroup.kill", "1")
        return
    except OSError:
        pass  # before Linux 5.14: signal each member (the callers repeat until none is left)
    for pid in _cgroup_pids(path):
        _signal(pid, signal.SIGKILL)


def _remove_cgroup(path: Path) -> bool:
    """Remove the cgroup ``path`` and its descendants, deepest first; True when it is gone."""
    for folder, _dirs, _files in os.walk(path, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    return not path.exists()


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
        """The containment of one new run (its cgroup is made now, if cgroups are in use)."""
        token = token or secrets.token_hex(8)
        return RunTree(self, f"{self.node_key}:{self.incarnation}:{token}", self._make_cgroup(token))

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
        leftovers: list[Path] = []
        if self.node_cgroup is not None and self.node_cgroup.is_dir():
            with contextlib.suppress(OSError):
                leftovers = [
                    p for p in self.node_cgroup.iterdir() if p.is_dir() and p.name != self.incarnation
                ]
        killed: set[int] = set()
        for path in leftovers:
            killed |= _cgroup_pids(path)
            _cgroup_kill(path)
        mine, ours = f"{self.node_key}:{self.incarnation}:", f"{self.node_key}:"

        def stale(marker: str) -> bool:
            return marker.startswith(ours) and not marker.startswith(mine)

        deadline = time.monotonic() + KILL_DEADLINE
        while True:
            pids = marked_pids(stale)
            for path in leftovers:
                pids |= _cgroup_pids(path)
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
            while not _remove_cgroup(path) and time.monotonic() < deadline:
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
            if self._incarnation_cgroup is not None:
                _remove_cgroup(self._incarnation_cgroup)
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
        # The gate execs the command by PATH: fail here, as Popen would, when it is not there.
        if shutil.which(argv[0], path=env.get("PATH", os.defpath)) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
        gate, release = os.pipe()
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", GATE, "dcron-run", *argv],
                stdin=gate,
                stdout=stdout,
                stderr=stderr,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            os.close(release)
            raise
        finally:
            os.close(gate)
        try:
            self.attach(proc.pid)
        finally:
            with contextlib.suppress(OSError):  # the gate died already: nothing runs
                os.write(release, b"\n")
            os.close(release)
        return proc

    def attach(self, pid: int) -> None:
        """Contain the run's main process ``pid``, a session leader (:meth:`popen` calls this)."""
        self.pgid = pid
        if self.cgroup is None:
            return
        try:
            _write(self.cgroup / "cgroup.procs", str(pid))
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return  # already gone; whatever it forked carries the marker
            self.tree._off(f"cannot move a process into {self.cgroup}: {exc}")
            _remove_cgroup(self.cgroup)
            self.cgroup = None

    def members(self) -> set[int]:
        """Live processes of the run found by its cgroup or its marker."""
        pids = marked_pids(self.marker.__eq__)
        if self.cgroup is not None:
            pids |= _cgroup_pids(self.cgroup)
        pids.discard(os.getpid())
        return pids

    def end(self, main: subprocess.Popen[Any] | None = None, grace: float = 2.0) -> set[int]:
        """End every process of the run: SIGTERM, up to ``grace`` seconds if any lives on, SIGKILL.

        ``main`` is the run's main process, if it may still be running.  Returns the pids signalled
        (the main process among them while it was alive).  Safe to call again, and from two threads:
        once a call found nothing left, later ones return at once.
        """
        with self._lock:
            pids = set() if self._ended else self.members()
            if not pids and (main is None or main.poll() is not None):
                # The usual end of a run, nothing left behind: one sweep.  A process of the group
                # that is neither in the cgroup nor marked still gets its SIGKILL.
                if not self._ended:
                    _signal_group(self.pgid, signal.SIGKILL)
                    self._ended = True
                self.close()
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
                _cgroup_kill(self.cgroup)
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

    def close(self) -> None:
        """Remove the run's cgroup (once empty); the run must have ended."""
        if self.cgroup is not None:
            deadline = time.monotonic() + 1.0
            while not _remove_cgroup(self.cgroup):
                if time.monotonic() > deadline:
                    log.debug("cannot remove %s (still in use)", self.cgroup)
                    return
                time.sleep(_POLL)
            self.cgroup = None
