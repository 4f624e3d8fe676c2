"""cgroup v2 containment of a run (the first of the three ways :mod:`libdcron.proctree` contains one).

Each run gets a cgroup, ``<mount>/dcron/<node-key>/<incarnation>/<run-token>``, where the host
allows it.  The mount is the read-write ``cgroup2`` entry of ``/proc/self/mounts``
(``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on a hybrid host, see :func:`cgroup2_mount`).
The child's pid is written into the run's ``cgroup.procs`` as soon as ``Popen`` returns, and the
child cannot fork before that: it starts as ``/bin/sh -c 'read -r x || exit 125; exec "$@"
</dev/null' dcron-run COMMAND...`` (:data:`GATE`), which waits for one line on its stdin (a pipe
that :func:`popen_gated` writes to once the pid is in the cgroup) and then execs the command in
the same process.  Without that gate an ``sh`` script forks its first children before the
parent's write, measured here; the gate costs one ``sh`` exec, about 1 ms a spawn.  So every
process of the run is a member, whatever its session or environment; only a privileged process
can move out (``systemd-run --scope`` does: the marker still finds those).  These cgroups are
outside dcrond's own: a service manager that stops dcrond by killing its cgroup does not reach
them, which is one more reason for the start-up sweep.

Ending: ``cgroup.kill`` (Linux >= 5.14, atomic even against a fork bomb), else SIGKILL to every
pid of ``cgroup.procs`` until it is empty (:func:`kill_cgroup`; the callers repeat it); then the
cgroup is removed (:func:`remove_cgroup`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "CGROUP_FOLDER",
    "GATE",
    "cgroup2_mount",
    "cgroup_descendants",
    "cgroup_pids",
    "cgroup_populated",
    "kill_cgroup",
    "leftover_cgroups",
    "popen_gated",
    "remove_cgroup",
    "write_control",
]

#: The folder under the cgroup2 mount that holds every node's cgroups.
CGROUP_FOLDER = "dcron"
#: Runs as the run's main process until its pid is in the cgroup, then execs the command.
GATE = 'read -r x || exit 125; exec "$@" </dev/null'
_PREFERRED_MOUNTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))


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


def _keyed(path: Path, key: str) -> int | None:
    """The value of ``key`` in a flat-keyed cgroup file (``cgroup.events``, ``cgroup.stat``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        text = os.read(fd, 4096)  # (these files are a few short lines)
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in text.split(b"\n"):
        name, _, value = line.partition(b" ")
        if name == key.encode():
            with contextlib.suppress(ValueError):
                return int(value)
    return None


def cgroup_populated(path: Path) -> bool | None:
    """Whether a live process is in the cgroup ``path`` or below (``cgroup.events``), as the
    kernel updates it when a member exits; None when it cannot be read.  One read of a small
    file instead of a walk of every descendant's ``cgroup.procs``."""
    value = _keyed(path / "cgroup.events", "populated")
    return None if value is None else value != 0


def cgroup_descendants(path: Path) -> int | None:
    """How many live cgroups are below ``path`` (``cgroup.stat``), or None when unreadable."""
    return _keyed(path / "cgroup.stat", "nr_descendants")


def cgroup_pids(path: Path) -> set[int]:
    """Pids in the cgroup ``path`` and its descendants (exited ones are no longer listed)."""
    if cgroup_populated(path) is False:
        return set()
    pids: set[int] = set()
    for folder, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(p) for p in Path(folder, "cgroup.procs").read_text().split())
    return pids


def write_control(path: Path, text: str) -> None:
    """Write ``text`` to the cgroup control file ``path`` (``cgroup.procs``, ``cgroup.kill``)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def kill_cgroup(path: Path) -> None:
    """Kill every process of the cgroup ``path`` and its descendants, at once where the kernel can."""
    try:
        write_control(path / "cgroup.kill", "1")
        return
    except OSError:
        pass  # before Linux 5.14: signal each member (the callers repeat until none is left)
    for pid in cgroup_pids(path):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def remove_cgroup(path: Path) -> bool:
    """Remove the cgroup ``path`` and its descendants, deepest first; True when it is gone."""
    for folder, _dirs, _files in os.walk(path, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    return not path.exists()


def leftover_cgroups(node_cgroup: Path | None, incarnation: str) -> list[Path]:
    """The incarnation cgroups under ``node_cgroup`` other than ``incarnation``'s own."""
    leftovers: list[Path] = []
    if node_cgroup is not None and node_cgroup.is_dir():
        with contextlib.suppress(OSError):
            leftovers = [p for p in node_cgroup.iterdir() if p.is_dir() and p.name != incarnation]
    return leftovers


def popen_gated(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str | None,
    stdout: int | None,
    stderr: int | None,
    attach: Callable[[int], None],
) -> subprocess.Popen[bytes]:
    """Start ``argv`` behind the :data:`GATE`, in a new session; ``attach(pid)``; open the gate.

    ``attach`` puts the pid in the run's cgroup: the command cannot fork before it returns.
    Raises :class:`OSError` as ``Popen`` does when the command cannot be started.
    """
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
        attach(proc.pid)
    finally:
        with contextlib.suppress(OSError):  # the gate died already: nothing runs
            os.write(release, b"\n")
        os.close(release)
    return proc
