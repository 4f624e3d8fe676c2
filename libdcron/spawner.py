"""Spawning runs from a small helper process, off the daemon's interpreter lock.

Starting a process from a busy multi-threaded Python (``subprocess.Popen``: fork, exec, moving the
child into its cgroup) costs little CPU, but every step waits for the interpreter lock that the
daemon's other threads hold: measured on the 2-core test machine, a spawn took 1 ms in an idle
process and 8-20 ms inside a dcrond running 300-500 runs a second, which capped a node at about 300
spawns a second.  So a worker hands spawning to a helper: this module run as a script, a
single-threaded process with a small heap, which starts every run (it joins the run's cgroup, starts
the run's process there with one ``posix_spawn``, and leaves: for its own cgroup, or in a burst,
when the next request is waiting already, straight for the next run's cgroup), reaps it, and
reports.  It reports a run only once it is out of the run's cgroup, so that a run is never
reported with the helper among its members.  The run holds only its stdin (``/dev/null``) and
its output pipe, with SIGINT, SIGPIPE and SIGXFSZ at their default action (the helper ignores
the first, Python the other two).

Protocol, over a ``SOCK_SEQPACKET`` socket pair (one JSON object per message):

- daemon -> helper, first: ``{"base_env": {...}}``, the environment every run starts from;
- daemon -> helper: ``{"id": N, "argv": [...], "env": {...}, "cwd": DIR, "cgroup": DIR | null}``,
  ``env`` being what the run adds to (or changes in) the base environment;
- helper -> daemon: ``{"id": N, "pid": PID, "cgroup_failed": B}`` with the read end of the run's output pipe passed
  along (``SCM_RIGHTS``; ``cgroup_failed``: it could not join its cgroup and runs without one), or ``{"id": N, "error": TEXT, "errno": E}`` when it could not start;
- helper -> daemon: ``{"exit": PID, "code": C}`` once the process ended (C as ``Popen.returncode``).

Error handling: the helper exits when the daemon's end of the socket closes (the daemon stopped or
died); its runs' processes live on, as they would after a daemon crash, for the start-up sweep of
:mod:`libdcron.proctree`.  When the helper dies, :class:`Spawner` kills the process group of every
run it had started and not yet reported (their exit codes are lost) and starts a new helper for the
next run.  This file imports only the standard library: the helper runs it as a script.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("libdcron.spawner")

MAX_MESSAGE = 1 << 18


# -- the daemon's side ------------------------------------------------------------------------------


class RemoteProcess:
    """A run's main process started by the helper: what the worker needs of a ``Popen``."""

    def __init__(self, pid: int, stdout_fd: int) -> None:
        self.pid = pid
        self.stdout = os.fdopen(stdout_fd, "rb", buffering=0)
        self.returncode: int | None = None
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._on_exit: Callable[[], None] | None = None
        #: The process could not join the cgroup it was meant for (it runs without one).
        self.cgroup_failed = False

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def when_exited(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the process has ended (now, if it has)."""
        with self._lock:
            if self.returncode is None:
                self._on_exit = callback
                return
        callback()

    def _exited(self, code: int) -> None:
        with self._lock:
            self.returncode = code
            callback, self._on_exit = self._on_exit, None
        self._ended.set()
        if callback is not None:
            callback()


Reply = Callable[[RemoteProcess | None, OSError | None], None]


class Spawner:
    """The daemon's end: :meth:`spawn` asks the helper to start a run and calls back."""

    def __init__(self, base_env: Mapping[str, str] | None = None) -> None:
        """``base_env``: the environment each run's starts from (sent to a helper once, when it
        starts, instead of with every run); a run's ``env`` is added to it."""
        self._base = json.dumps({"base_env": dict(base_env or {})}).encode()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._seq = 0
        self._pending: dict[int, Reply] = {}
        self._live: dict[int, RemoteProcess] = {}
        self._sock: socket.socket | None = None
        self._helper: subprocess.Popen[bytes] | None = None
        self._closed = False

    def waiting(self) -> int:
        """Spawns asked for and not answered yet."""
        return len(self._pending)

    def start(self) -> None:
        """Start the helper now rather than at the first spawn (a Python start-up, tens of ms,
        which the first runs would otherwise wait for).  Raises :class:`OSError` if it cannot."""
        with self._lock:
            if not self._closed:
                self._ensure()

    def _ensure(self) -> socket.socket:
        """The helper's socket, starting the helper first if needed (lock held)."""
        if self._sock is not None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._helper = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            ours.send(self._base)  # (the helper reads it before any run)
        except OSError:
            ours.close()
            raise
        self._sock = ours
        threading.Thread(target=self._read, args=(ours,), name="dcron-spawner", daemon=True).start()
        return ours

    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str | None, cgroup: str | None, reply: Reply
    ) -> None:
        """Start ``argv`` with the base environment plus ``env``; ``reply(process, None)`` or
        ``reply(None, error)`` is called from the spawner's reader thread.  Raises
        :class:`OSError` when the helper cannot be reached."""
        with self._lock:
            if self._closed:
                raise OSError(errno.ESHUTDOWN, "the spawner is closed")
            sock = self._ensure()
            self._seq += 1
            seq = self._seq
            self._pending[seq] = reply
        data = json.dumps({"id": seq, "argv": argv, "env": env, "cwd": cwd, "cgroup": cgroup}).encode()
        # Not under ``_lock``: a send can wait for the helper, which can wait for the reader.
        try:
            with self._send_lock:
                sock.send(data)
        except OSError:
            with self._lock:
                self._pending.pop(seq, None)
            raise

    def _read(self, sock: socket.socket) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
            except OSError:
                data, fds = b"", []
            if not data:
                return self._lost(sock)
            try:
                message = json.loads(data)
            except ValueError:
                log.error("spawner: unreadable message %r", data[:200])
                continue
            if "exit" in message:
                with self._lock:
                    process = self._live.pop(int(message["exit"]), None)
                if process is not None:
                    process._exited(int(message["code"]))
                continue
            with self._lock:
                reply = self._pending.pop(int(message.get("id", -1)), None)
                process = None
                if "pid" in message and fds:
                    process = RemoteProcess(int(message["pid"]), fds[0])
                    process.cgroup_failed = bool(message.get("cgroup_failed"))
                    self._live[process.pid] = process
            if reply is None:
                for fd in fds:
                    os.close(fd)
                continue
            if process is not None:
                reply(process, None)
            else:
                code = int(message.get("errno") or errno.EIO)
                reply(None, OSError(code, str(message.get("error", "cannot start the process"))))

    def _lost(self, sock: socket.socket) -> None:
        """The helper is gone: fail what waits, end what it had started, start anew next time."""
        with self._lock:
            if self._sock is sock:
                self._sock = None
            pending, self._pending = self._pending, {}
            live, self._live = self._live, {}
            closed = self._closed
        with contextlib.suppress(OSError):
            sock.close()
        how = "died"
        if self._helper is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._helper.wait(timeout=1.0)
                how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        if not closed and (pending or live):
            log.error("the spawner process %s; ending %d run(s) it had started", how, len(live))
        for reply in pending.values():
            reply(None, OSError(errno.EPIPE, "the spawner process died"))
        for process in live.values():
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process._exited(-signal.SIGKILL)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._helper is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._helper.wait(timeout=5.0)


# -- the helper process ---------------------------------------------------------------------------


def _join(path: str) -> None:
    """Move this (single-threaded) process into the cgroup ``path``."""
    fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY)
    try:
        os.write(fd, b"0")  # "0": the writing process itself
    finally:
        os.close(fd)


def _home() -> str | None:
    """This process's own cgroup v2 folder, or None without a cgroup2 mount."""
    try:
        with open("/proc/self/mounts") as mounts:
            mount = next((line.split()[1] for line in mounts if line.split()[2:3] == ["cgroup2"]), None)
        with open("/proc/self/cgroup") as own:
            path = next((line[3:].strip() for line in own if line.startswith("0::")), None)
    except OSError:
        return None
    if mount is None or path is None:
        return None
    return os.path.join(mount, path.lstrip("/"))


#: The helper's own cgroup, which it goes back to after spawning into a run's cgroup.
HOME: str | None = None
#: The cgroup this helper is in now: :data:`HOME`, or the next run's during a burst.
HERE: str | None = None
#: The environment every run starts from (the daemon's first message).
BASE_ENV: dict[str, str] = {}


#: Signals a run starts with at their default action (the helper ignores SIGINT; Python ignores
#: SIGPIPE and SIGXFSZ: ``subprocess`` restores those two as well).
DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ)
#: The helper's folder when it started: where a run without a folder of its own starts.
START_DIR = os.getcwd()


def _spawn(argv: list[str], env: dict[str, str], cwd: str | None, output: int) -> int:
    """Start ``argv`` in a new session, stdin from /dev/null, stdout and stderr to ``output``:
    one ``posix_spawn`` (a ``vfork`` and the exec), without ``subprocess``'s Python work and
    its pipe for the child's errors (13-30 % of the helper's CPU a run, measured).  Raises
    :class:`OSError` as ``Popen`` does when the command cannot be started."""
    program = argv[0]
    if "/" not in program:  # looked up on the run's PATH, as Popen does
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        program = found
    os.chdir(cwd or START_DIR)  # (this process has one thread: the child starts here)
    return os.posix_spawn(
        program,
        argv,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, output, 1),
            (os.POSIX_SPAWN_DUP2, output, 2),
        ],
        setsid=True,
        setsigdef=DEFAULT_SIGNALS,
    )


#: The daemon's next request as :func:`_leave` read it: parsed, or as it came (``b""``: the
#: daemon is gone; text that is not JSON fails in :func:`serve`, as a request read there would).
Next = dict[str, Any] | bytes


def _waiting(sock: socket.socket) -> Next | None:
    """The daemon's next request if one is waiting already, else None."""
    try:
        data = sock.recv(MAX_MESSAGE, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return b""  # the socket is broken: as if the daemon were gone
    try:
        message = json.loads(data)
    except ValueError:
        return data
    return message if isinstance(message, dict) else data


def _leave(sock: socket.socket) -> Next | None:
    """Leave the cgroup of the run just spawned: for the cgroup of the next run when its
    request is waiting already (a burst: one move a run instead of two), else home.  Returns
    the waiting request, if any, for :func:`serve` to handle next."""
    global HERE
    assert HOME is not None
    after = _waiting(sock)
    target = after.get("cgroup") if isinstance(after, dict) else None
    if target:
        try:
            _join(target)
            HERE = target
            return after
        except OSError:
            pass  # that run tries again, and runs without a cgroup if it fails again
    try:
        _join(HOME)
    except OSError as exc:  # it would count as a member of the run: give up
        print(f"dcron spawner: cannot go back to {HOME}: {exc}", file=sys.stderr)
        os._exit(70)
    HERE = HOME
    return after


def _start(sock: socket.socket, children: set[int], message: dict[str, Any]) -> Next | None:
    """Start one run and report it, once this process is out of the run's cgroup; returns the
    next request if it was read meanwhile (see :func:`_leave`)."""
    global HERE
    read, write = os.pipe()
    cgroup, cgroup_failed, after = message.get("cgroup"), False, None

    def spawn() -> int:
        return _spawn(message["argv"], {**BASE_ENV, **message["env"]}, message.get("cwd"), write)

    try:
        if cgroup and HOME is not None:
            # Join the run's cgroup (unless the last run's leaving did: HERE is either HOME or
            # this run's cgroup), fork (the child is born in it, and a vfork is possible: no code
            # runs in the child before its exec), leave.
            if cgroup != HERE:
                try:
                    _join(cgroup)
                    HERE = cgroup
                except OSError:
                    cgroup_failed = True
            try:
                pid = spawn()
            finally:
                if HERE != HOME:
                    after = _leave(sock)
        else:
            cgroup_failed = bool(cgroup)
            pid = spawn()
    except OSError as exc:
        os.close(read)
        if exc.errno:
            code, text = exc.errno, f"{exc.strerror}: {exc.filename!r}" if exc.filename else str(exc.strerror)
        else:
            code, text = errno.EIO, str(exc)
        sock.send(json.dumps({"id": message["id"], "error": text, "errno": code}).encode())
        return after
    finally:
        os.close(write)
    children.add(pid)
    try:
        reply = {"id": message["id"], "pid": pid, "cgroup_failed": cgroup_failed}
        socket.send_fds(sock, [json.dumps(reply).encode()], [read])
    finally:
        os.close(read)
    return after


def _reap(sock: socket.socket, children: set[int]) -> None:
    """Reap every ended child (one ``waitpid(-1)`` per ended child, not a poll of each)."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:
            children.discard(pid)
            sock.send(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def serve(fd: int) -> None:
    global HOME, HERE
    HOME = HERE = _home()
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)  # (passed inheritable; a run must not hold the daemon's socket)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the daemon's to handle
    children: set[int] = set()

    def woken() -> bool:
        """Whether a SIGCHLD came (its wake-up bytes are read)."""
        found = False
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_r, 4096):
                found = True
        return found

    after: Next | None = None
    while True:
        if after is None:
            try:
                ready, _, _ = select.select([sock.fileno(), wake_r], [], [], 1.0)
            except InterruptedError:
                continue
            if wake_r in ready or not ready:  # a SIGCHLD, or a second went by
                woken()
                _reap(sock, children)
            if sock.fileno() not in ready:
                continue
            after = sock.recv(MAX_MESSAGE)
        elif woken():  # (a burst's requests come back to back: its ends are reported too)
            _reap(sock, children)
        if isinstance(after, bytes):
            if not after:
                return  # the daemon is gone
            after = json.loads(after)
        message, after = after, None
        assert isinstance(message, dict)
        if "base_env" in message:
            BASE_ENV.clear()
            BASE_ENV.update(message["base_env"])
            continue
        after = _start(sock, children, message)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
