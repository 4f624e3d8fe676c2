"""A fake election for tests: :class:`FakeElection`, whose outcome the test decides by hand."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ..abc import Election, Member

__all__ = ["FakeElection"]


class FakeElection(Election):
    """An :class:`~libdcron.abc.Election` whose outcome the test decides.

    With no ``members``, the node that starts it is its only member and leads at once.
    With ``members`` (other nodes, as :class:`~libdcron.abc.Member`), the starting node joins them,
    and ``leader`` (a node id) leads; by default the starting node does.  ``leader=""`` starts
    with no leader.  Then :meth:`set_leader` moves leadership, :meth:`suspend` and :meth:`resume`
    play a lost and regained connection, :meth:`add_member` and :meth:`remove_member` change the
    membership.

    ``on_elected`` and ``on_deposed`` are called synchronously, on the thread that caused the
    change (the test's), never under the election's lock.
    """

    def __init__(self, members: Sequence[Member] = (), leader: str | None = None) -> None:
        self._lock = threading.RLock()
        self._members: dict[str, Member] = {m.node_id: m for m in members}
        self._initial_leader = leader
        self._leader: str | None = None
        self._me: Member | None = None
        self._suspended = False
        self._on_elected: Callable[[], None] | None = None
        self._on_deposed: Callable[[], None] | None = None
        #: Every callback made, in order: ``"elected"`` or ``"deposed"``.
        self.events: list[str] = []

    # -- Election -----------------------------------------------------------------------------

    def start(self, me: Member, on_elected: Callable[[], None], on_deposed: Callable[[], None]) -> None:
        """Join as ``me``; lead now if ``leader`` was not given, or names ``me``."""
        with self._lock:
            self._me = me
            self._members[me.node_id] = me
            self._on_elected, self._on_deposed = on_elected, on_deposed
            initial = me.node_id if self._initial_leader is None else self._initial_leader
        self.set_leader(initial or None)

    def stop(self) -> None:
        """Step down (calling ``on_deposed`` if leading) and leave the membership."""
        with self._lock:
            me = self._me
        if me is None:
            return
        if self.is_leader():
            self.set_leader(None)
        with self._lock:
            self._members.pop(me.node_id, None)
            self._me = None

    def is_leader(self) -> bool:
        """Whether the started node is the leader."""
        with self._lock:
            return self._me is not None and self._leader == self._me.node_id

    def leader(self) -> Member | None:
        """The leading member, or ``None``."""
        with self._lock:
            return self._members.get(self._leader) if self._leader else None

    def members(self) -> list[Member]:
        """Members by node id."""
        with self._lock:
            return [self._members[k] for k in sorted(self._members)]

    def suspended(self) -> bool:
        """True between :meth:`suspend` and :meth:`resume`."""
        return self._suspended

    # -- controls -----------------------------------------------------------------------------

    def set_leader(self, leader: str | Member | None) -> None:
        """Make ``leader`` (a member or its node id) lead, or nobody with ``None``.

        Calls ``on_deposed`` when the started node loses leadership and ``on_elected`` when it
        gains it.  A node id that is not a member raises :class:`ValueError`.
        """
        node_id = leader.node_id if isinstance(leader, Member) else leader
        with self._lock:
            if isinstance(leader, Member):
                self._members.setdefault(leader.node_id, leader)
            if node_id is not None and node_id not in self._members:
                raise ValueError(f"{node_id!r} is not a member ({', '.join(sorted(self._members))})")
            was = self.is_leader()
            self._leader = node_id
            now = self.is_leader()
            on_elected, on_deposed = self._on_elected, self._on_deposed
        if was and not now and on_deposed is not None:
            self.events.append("deposed")
            on_deposed()
        elif now and not was and on_elected is not None:
            self.events.append("elected")
            on_elected()

    def suspend(self) -> None:
        """Play a lost connection: :meth:`suspended` is true (a leader stops dispatching)."""
        self._suspended = True

    def resume(self) -> None:
        """The connection is back: :meth:`suspended` is false."""
        self._suspended = False

    def add_member(self, member: Member) -> None:
        """Add (or replace) a live member."""
        with self._lock:
            self._members[member.node_id] = member

    def remove_member(self, node_id: str) -> None:
        """Remove a member, as when its session expires; if it led, nobody leads."""
        with self._lock:
            is_me = self._me is not None and self._me.node_id == node_id
        if is_me:
            self.stop()
            return
        with self._lock:
            self._members.pop(node_id, None)
            if self._leader == node_id:
                self._leader = None
