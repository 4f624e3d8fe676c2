"""The state of a :class:`~dcron_plugins.election_zookeeper.election.ZooKeeperElection` and the
kazoo helpers its parts share (membership, leadership, the election thread)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from typing import Any

from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from libdcron.abc import Member

from .url import DEFAULT_CHROOT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SESSION_TIMEOUT

log = logging.getLogger(__package__)  # one logger for the whole plugin, named after the package

#: Any error a kazoo call may raise (its timeouts do not derive from KazooException).
KAZOO_ERRORS: tuple[type[Exception], ...] = (KazooException, KazooTimeoutError)
_RETRY_INTERVAL = 0.5


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Retry(Exception):
    """Joining could not finish now; the election thread tries again shortly."""


_JOIN_ERRORS: tuple[type[Exception], ...] = (*KAZOO_ERRORS, _Retry)


class _ElectionBase:
    """What every part of the election holds: settings, the kazoo client, the known state."""

    def __init__(
        self,
        hosts: str,
        chroot: str = DEFAULT_CHROOT,
        session_timeout: float = DEFAULT_SESSION_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.hosts = hosts
        self.chroot = chroot.rstrip("/") or DEFAULT_CHROOT
        self.session_timeout = session_timeout
        self.connect_timeout = connect_timeout
        #: Timeout of each ZooKeeper call made by the election thread.
        self.op_timeout = max(1.0, session_timeout / 2)
        self.members_path = f"{self.chroot}/members"
        self.election_path = f"{self.chroot}/election"
        self._token = uuid.uuid4().hex
        self._client: Any = None
        self._me: Member | None = None
        self._me_json = b""
        self._on_elected: Callable[[], None] = lambda: None
        self._on_deposed: Callable[[], None] = lambda: None
        self._events: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._state_lock = threading.Lock()  # guards the suspension fields
        self._watches: dict[str, Any] = {}
        # Read by any thread, written by the election thread (and the state listener for the
        # two suspension fields): each is replaced whole, never mutated in place.
        self._leading = False
        self._suspended = False
        self._suspended_at: float | None = None
        self._members: list[Member] = []
        self._leader: Member | None = None
        # Election thread only.
        self._session: int | None = None
        self._old_sessions: set[int] = set()
        self._need_join = False
        self._retry_at: float | None = None
        self._candidate: str | None = None
        self._member_children: list[str] = []
        self._election_children: list[str] = []
        self._candidate_data: dict[str, Member | None] = {}

    # -- helpers -----------------------------------------------------------------------------------

    def _depose(self) -> None:
        if self._leader is not None and self._leader is self._me:
            self._leader = None  # until the list says who leads now
        if self._leading:
            self._leading = False
            log.warning("deposed: no longer the leader", extra={"node": self._me.node_id if self._me else ""})
            self._safe(self._on_deposed)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a kazoo ``*_async`` call and wait for it, at most ``op_timeout``."""
        return method(*args, **kwargs).get(timeout=self.op_timeout)

    def _delete(self, path: str) -> None:
        with contextlib.suppress(NoNodeError):
            self._call(self._client.delete_async, path)

    def _reset_state(self) -> None:
        self._events = queue.Queue()
        self._stopping.clear()
        self._watches = {}
        self._leading = self._suspended = self._need_join = False
        self._suspended_at = self._retry_at = None
        self._members, self._leader, self._candidate = [], None, None
        self._session, self._old_sessions = None, set()
        self._member_children, self._election_children, self._candidate_data = [], [], {}

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping.set()
        try:
            client.stop()
            client.close()
        except Exception as exc:  # closing is best effort
            log.debug("closing the ZooKeeper client: %s", _describe(exc))

    @staticmethod
    def _safe(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.exception("election callback failed")
