"""Leader election and live membership over ZooKeeper (kazoo), for clusters of several hosts.

The URL and the options: :mod:`dcron_plugins.election_zookeeper.url`.

Layout under the chroot:

- ``members/<node_id>``: an EPHEMERAL node per live node holding its :class:`Member` as JSON
  (``Member.to_wire``).  :meth:`~ZooKeeperElection.members` returns a cache that is read again
  whenever a ``ChildrenWatch`` reports a change, so it costs nothing to call often.
- ``election/<token>-n_<sequence>``: an EPHEMERAL SEQUENTIAL candidate per campaigning node,
  holding the candidate's Member JSON.  The candidate with the lowest sequence number leads, so
  every node reads the same leader from the same list (``leader()`` agrees everywhere).  The
  token (random, one per :class:`ZooKeeperElection`) lets a node recognise its own candidates
  after a lost connection or session.

Threads: kazoo's connection-state listener and watch callbacks only queue an event; one thread
of our own ("dcron-election") does every ZooKeeper call that follows and runs ``on_elected`` and
``on_deposed`` (except the ``on_deposed`` of :meth:`~ZooKeeperElection.stop`, run by its caller),
so a slow callback never blocks kazoo.  Its ZooKeeper calls have timeouts.  It reads a list
afresh on each change event rather than trusting the event's copy, which may be older than what
it has read since (after a reconnection, say).

Error handling:

- SUSPENDED (connection to ZooKeeper lost, session maybe alive): :meth:`suspended` turns true at
  once and the leader must stop dispatching; leadership is kept.  If the connection is back
  within the session timeout, the same session goes on and :meth:`suspended` turns false again.
  If it stays away longer than ``session_timeout``, the session has expired on the server (another
  node may lead by now): this node steps down by itself (``on_deposed``) without waiting to hear
  it from ZooKeeper.
- LOST (the session expired, so our ephemeral nodes are gone): ``on_deposed`` if leading.  kazoo
  reconnects by itself with a new session; then this node re-publishes its member node and
  campaigns again, with no help from the caller, and ``on_elected`` is called if it wins.
  Nodes still held by the old session (when only this client gave it up) are deleted first.
- A member node with the same ``node_id`` held by another session: :meth:`start` waits up to
  twice the session timeout for it to go (an earlier run of this node whose session has not
  expired yet) and then raises :class:`~libdcron.errors.ValidationError` (two live nodes share an
  id).  After a LOST, the rejoin keeps retrying instead.
- :meth:`start` raises :class:`~libdcron.errors.UnavailableError` when ZooKeeper cannot be
  reached; :meth:`members` and :meth:`leader` never block nor raise: they return the last known
  state (check :meth:`suspended`).  :meth:`stop` is best effort and never raises: closing the
  session removes our ephemeral nodes anyway.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kazoo.client import KazooClient, KazooState
from kazoo.recipe.watchers import ChildrenWatch
from kazoo.retry import KazooRetry

from libdcron.abc import Election, Member
from libdcron.errors import UnavailableError, ValidationError

from .base import _JOIN_ERRORS, _RETRY_INTERVAL, KAZOO_ERRORS, _describe
from .leadership import _Leadership
from .membership import _Membership

log = logging.getLogger(__package__)


@dataclass(frozen=True)
class _StateEvent:
    state: str  # a KazooState
    session_id: int | None  # the session of a CONNECTED


@dataclass(frozen=True)
class _ChildrenEvent:
    kind: str  # "members" or "election": that list changed


class ZooKeeperElection(_Membership, _Leadership, Election):
    """:class:`~libdcron.abc.Election` over ZooKeeper; see the module's docstring."""

    # -- the Election contract --------------------------------------------------------------------

    def start(self, me: Member, on_elected: Callable[[], None], on_deposed: Callable[[], None]) -> None:
        if self._client is not None:
            raise ValidationError("this ZooKeeper election is already started; stop it first")
        if not me.node_id or "/" in me.node_id or me.node_id in (".", ".."):
            raise ValidationError(f"node id {me.node_id!r} cannot name a ZooKeeper node (no '/', not empty)")
        self._me, self._me_json = me, json.dumps(me.to_wire()).encode()
        self._on_elected, self._on_deposed = on_elected, on_deposed
        self._reset_state()
        client = KazooClient(
            hosts=self.hosts,
            timeout=self.session_timeout,
            # Reconnect quickly after an outage: kazoo's default backoff grows to minutes.
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0),
            command_retry=KazooRetry(max_tries=3, delay=0.1, backoff=2, max_delay=1.0),
        )
        client.add_listener(self._on_state)
        self._client = client
        try:
            client.start(timeout=self.connect_timeout)
        except KAZOO_ERRORS as exc:
            self._close_client()
            raise UnavailableError(
                f"cannot reach ZooKeeper at {self.hosts} within {self.connect_timeout:g}s "
                f"({_describe(exc)}): is it running and reachable?"
            ) from exc
        self._session = client._session_id
        try:
            self._call(client.ensure_path_async, self.members_path)
            self._call(client.ensure_path_async, self.election_path)
            self._publish_member(wait=2 * self.session_timeout)
            self._watch()
            self._campaign()
            # So that members() is right as soon as start() returns.
            self._member_children = self._call(client.get_children_async, self.members_path)
            self._refresh_members()
        except ValidationError:
            self._close_client()
            raise
        except _JOIN_ERRORS as exc:
            self._close_client()
            raise UnavailableError(
                f"cannot join the election in ZooKeeper {self.hosts}{self.chroot}: {_describe(exc)}"
            ) from exc
        self._thread = threading.Thread(target=self._run, name="dcron-election", daemon=True)
        self._thread.start()
        log.info(
            "joined the ZooKeeper election at %s%s as %s",
            self.hosts,
            self.chroot,
            me.node_id,
            extra={"node": me.node_id},
        )

    def stop(self) -> None:
        client = self._client
        if client is None:
            return
        self._stopping.set()
        self._events.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            # A callback may call stop(): then the thread ends by itself once it returns.
            self._thread.join(timeout=10)
        self._thread = None
        was_leading, self._leading = self._leading, False
        if was_leading:
            self._safe(self._on_deposed)
        if client.connected:
            # Delete the candidate first so that another node takes over at once.
            paths = [f"{self.election_path}/{self._candidate}"] if self._candidate else []
            if self._me is not None:
                paths.append(f"{self.members_path}/{self._me.node_id}")
            for path in paths:
                try:
                    client.delete_async(path).get(timeout=self.op_timeout)
                except KAZOO_ERRORS as exc:
                    log.debug("could not delete %s on stop: %s", path, _describe(exc))
        self._close_client()
        self._members, self._leader, self._candidate = [], None, None
        self._suspended, self._suspended_at = False, None
        if self._me is not None:
            log.info("left the ZooKeeper election", extra={"node": self._me.node_id})

    def is_leader(self) -> bool:
        return self._leading

    def leader(self) -> Member | None:
        if self._leading:
            return self._me
        return self._leader

    def members(self) -> list[Member]:
        return list(self._members)

    def suspended(self) -> bool:
        return self._suspended

    # -- kazoo callbacks: they only queue events ------------------------------------------------

    def _on_state(self, state: str) -> None:
        if self._stopping.is_set():
            return
        if state == KazooState.CONNECTED:
            self._events.put(_StateEvent(state, self._client._session_id if self._client else None))
            return
        with self._state_lock:
            if not self._suspended:
                self._suspended_at = time.monotonic()
                self._suspended = True
        self._events.put(_StateEvent(state, None))

    def _watch(self) -> None:
        for kind, path in (("members", self.members_path), ("election", self.election_path)):
            watch = self._watches.get(kind)
            if watch is not None and not getattr(watch, "_stopped", False):
                continue

            def queue_children(children: list[str], kind: str = kind) -> None:
                if not self._stopping.is_set():
                    self._events.put(_ChildrenEvent(kind))

            self._watches[kind] = ChildrenWatch(self._client, path, queue_children)

    # -- the election thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                event = self._events.get(timeout=self._wait_time())
            except queue.Empty:
                event = "tick"
            if event is None or self._stopping.is_set():
                break
            try:
                self._handle(event)
                self._housekeeping()
            except Exception:  # the thread must survive anything: it is the node's only campaign
                log.exception("election thread error (it goes on)")
                self._retry_at = time.monotonic() + _RETRY_INTERVAL

    def _wait_time(self) -> float:
        deadlines = [t for t in (self._retry_at, self._depose_at()) if t is not None]
        if not deadlines:
            return 5.0
        return max(0.01, min(deadlines) - time.monotonic())

    def _depose_at(self) -> float | None:
        since = self._suspended_at
        if self._leading and self._suspended and since is not None:
            return since + self.session_timeout
        return None

    def _handle(self, event: object) -> None:
        if isinstance(event, _ChildrenEvent):
            # The event only says "changed": events queued earlier may be older than what this
            # thread has read since, so read the list afresh rather than trust the one it carries.
            self._resync(event.kind)
        elif isinstance(event, _StateEvent):
            if event.state == KazooState.SUSPENDED:
                log.warning("connection to ZooKeeper lost; leadership is suspended until it is back")
            elif event.state == KazooState.LOST:
                self._session_lost()
            elif event.state == KazooState.CONNECTED:
                self._connected(event.session_id)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        depose_at = self._depose_at()
        if depose_at is not None and now >= depose_at:
            log.warning(
                "no contact with ZooKeeper for %.1fs (the session timeout): stepping down",
                self.session_timeout,
            )
            self._depose()
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            if self._client is not None and self._client.connected:
                if self._need_join:
                    self._join()
                self._resync()

    def _session_lost(self) -> None:
        log.warning("ZooKeeper session lost: this node rejoins when a new session is established")
        if self._session is not None:
            self._old_sessions.add(self._session)
        self._session = None
        self._need_join = True
        self._candidate = None
        self._depose()

    def _connected(self, session_id: int | None) -> None:
        if self._session is not None and session_id != self._session:
            # A new session without a LOST seen first: the old one is gone all the same.
            self._session_lost()
        self._session = session_id
        log.info("connected to ZooKeeper (session 0x%x)", session_id or 0)
        if self._need_join:
            self._join()
        self._resync()

    def _resync(self, only: str | None = None) -> None:
        """Read the lists of members and candidates (or ``only`` one) and act on them."""
        if self._client is None or not self._client.connected:
            return  # the CONNECTED event resyncs
        try:
            if only in (None, "members"):
                self._member_children = self._call(self._client.get_children_async, self.members_path)
            if only in (None, "election"):
                self._election_children = self._call(self._client.get_children_async, self.election_path)
        except KAZOO_ERRORS as exc:
            log.info("could not read the election state yet (%s); retrying", _describe(exc))
            self._retry_at = time.monotonic() + _RETRY_INTERVAL
            return
        if only in (None, "members"):
            self._refresh_members()
        if only in (None, "election"):
            self._refresh_leader()
        if only is None and not self._need_join:
            with self._state_lock:
                # kazoo clears `connected` before it calls the listener: a suspension that comes
                # now is either seen here or sets the flag again after us.
                if self._client is not None and self._client.connected:
                    self._suspended, self._suspended_at = False, None

    def _join(self) -> None:
        try:
            self._call(self._client.ensure_path_async, self.members_path)
            self._call(self._client.ensure_path_async, self.election_path)
            self._publish_member(wait=0)
            self._watch()
            self._campaign()
        except _JOIN_ERRORS as exc:
            log.warning("could not rejoin the election yet (%s); retrying", _describe(exc))
            self._retry_at = time.monotonic() + _RETRY_INTERVAL
            return
        self._need_join = False
        log.info("rejoined the election", extra={"node": self._me.node_id if self._me else ""})
