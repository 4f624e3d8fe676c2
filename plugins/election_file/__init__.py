"""Single-host election through OS file locks: the embedded default.

Several ``dcrond`` processes on one host that share a folder elect one leader and fail over when
it dies, with no external service.

Layout of the folder (``file:///var/lib/dcron/election``):

- ``leader.lock``: the leader holds an exclusive ``flock`` on it; the kernel releases it when the
  process dies, however it dies, so failover needs no timeout.
- ``leader.json``: the leader's :class:`Member`, written once it holds the lock.
- ``members/<node_id>.json``: each live node holds an exclusive lock on its own file.  A file
  that can be locked by someone else belongs to a dead node and is removed.

Error handling: there is no session to lose; ``suspended`` is always false.  If the folder becomes
unwritable the campaign logs it and keeps trying.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from libdcron.abc import Election, Member
from libdcron.errors import UnavailableError, ValidationError
from libdcron.hookspecs import hookimpl
from libdcron.options import number_option

log = logging.getLogger(__name__)


def _try_lock(handle: IO[Any], mode: int = fcntl.LOCK_EX) -> bool:
    try:
        fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class FileLockElection(Election):
    def __init__(self, directory: str | Path, poll_interval: float = 0.1) -> None:
        self.directory = Path(directory)
        self.poll_interval = poll_interval
        self._me: Member | None = None
        self._member_handle: IO[Any] | None = None
        self._leader_handle: IO[Any] | None = None
        self._on_elected: Callable[[], None] = lambda: None
        self._on_deposed: Callable[[], None] = lambda: None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def _members_dir(self) -> Path:
        return self.directory / "members"

    def start(self, me: Member, on_elected: Callable[[], None], on_deposed: Callable[[], None]) -> None:
        try:
            self._members_dir.mkdir(parents=True, exist_ok=True)
            path = self._members_dir / f"{me.node_id}.json"
            handle = open(path, "a+")  # noqa: SIM115 - held open for the node's life
            # Another node's members() may hold a probing lock for an instant: retry briefly.
            for _ in range(50):
                if _try_lock(handle):
                    break
                time.sleep(0.02)
            else:
                handle.close()
                raise ValidationError(f"node id {me.node_id!r} is already in use by a live node on this host")
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(me.to_wire()))
            handle.flush()
        except OSError as exc:
            raise UnavailableError(f"cannot use election folder {self.directory}: {exc}") from exc
        self._me, self._member_handle = me, handle
        self._on_elected, self._on_deposed = on_elected, on_deposed
        self._stop.clear()
        self._thread = threading.Thread(target=self._campaign, name="dcron-election", daemon=True)
        self._thread.start()

    def _campaign(self) -> None:
        assert self._me is not None
        while not self._stop.is_set():
            if self._leader_handle is None:
                try:
                    handle = open(self.directory / "leader.lock", "a+")  # noqa: SIM115
                except OSError as exc:
                    log.error("cannot open the leader lock in %s: %s", self.directory, exc)
                    self._stop.wait(1.0)
                    continue
                if _try_lock(handle):
                    try:
                        _write_atomic(self.directory / "leader.json", json.dumps(self._me.to_wire()))
                    except OSError as exc:
                        log.error("cannot write leader.json: %s", exc)
                        handle.close()
                        self._stop.wait(1.0)
                        continue
                    with self._lock:
                        self._leader_handle = handle
                    log.info("elected leader", extra={"node": self._me.node_id})
                    self._safe(self._on_elected)
                else:
                    handle.close()
            self._stop.wait(self.poll_interval)

    @staticmethod
    def _safe(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.exception("election callback failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            handle, self._leader_handle = self._leader_handle, None
        if handle is not None:
            self._safe(self._on_deposed)
            handle.close()  # releases the lock
        if self._member_handle is not None and self._me is not None:
            with contextlib.suppress(OSError):
                (self._members_dir / f"{self._me.node_id}.json").unlink(missing_ok=True)
            self._member_handle.close()
            self._member_handle = None

    def is_leader(self) -> bool:
        return self._leader_handle is not None

    def leader(self) -> Member | None:
        if self.is_leader():
            return self._me
        try:
            with open(self.directory / "leader.lock", "a+") as probe:
                if _try_lock(probe, fcntl.LOCK_SH):
                    return None  # nobody holds it
            data = json.loads((self.directory / "leader.json").read_text())
            return Member.from_wire(data)
        except (OSError, ValueError, KeyError):
            return None

    def members(self) -> list[Member]:
        found: list[Member] = []
        try:
            paths = sorted(self._members_dir.glob("*.json"))
        except OSError:
            return found
        for path in paths:
            if self._me is not None and path.stem == self._me.node_id:
                found.append(self._me)
                continue
            try:
                with open(path) as handle:
                    if _try_lock(handle, fcntl.LOCK_SH):
                        # nobody holds it: its node is dead (or is just starting: leave young files)
                        if time.time() - os.fstat(handle.fileno()).st_mtime > 5:
                            path.unlink(missing_ok=True)
                        continue
                    data = json.loads(handle.read() or "{}")
                found.append(Member.from_wire(data))
            except (OSError, ValueError, KeyError):
                continue
        return sorted(found, key=lambda m: m.node_id)


@hookimpl
def dcron_election(url: str, options: Mapping[str, Any]) -> Election | None:
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return None
    return FileLockElection(
        parsed.path, number_option(options, "election_poll_interval", 0.1, greater_than=0)
    )
