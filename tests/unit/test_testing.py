"""The helpers of :mod:`libdcron.testing`: ``wait_for``, ``FakeElection``, the in-memory store's URLs.

The in-memory store's contract is proven by tests/integration/test_document_store_contract.py,
which runs against it as against SQLite and CouchDB.
"""

from __future__ import annotations

import threading
import time

import pytest

from libdcron import testing
from libdcron.abc import JOBS, Election, Member
from libdcron.errors import DcronError, ValidationError
from libdcron.plugins import Plugins
from libdcron.testing import FakeElection, InMemoryDocumentStore, wait_for

# -- wait_for ----------------------------------------------------------------------------------


def test_wait_for_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, "", [], ["found"], ["later"]])
    assert wait_for(lambda: next(values), timeout=5, interval=0.001) == ["found"]
    assert next(values) == ["later"]  # not called again once truthy


def test_wait_for_returns_at_once_when_already_true() -> None:
    calls = []
    started = time.monotonic()
    assert wait_for(lambda: calls.append(1) or 42, timeout=5, interval=1) == 42
    assert calls == [1] and time.monotonic() - started < 0.5


def test_wait_for_raises_with_the_message_and_last_value() -> None:
    values = iter(range(1000))
    started = time.monotonic()
    with pytest.raises(AssertionError) as info:
        wait_for(lambda: [] if next(values) < 999 else None, timeout=0.2, interval=0.01, message="no job")
    elapsed = time.monotonic() - started
    text = str(info.value)
    assert text.startswith("no job within 0.2s") and "last value: []" in text
    assert 0.2 <= elapsed < 1.5


def test_wait_for_default_message_and_zero_timeout_checks_once() -> None:
    calls: list[int] = []
    with pytest.raises(AssertionError, match=r"condition not met within 0s \(last value: False\)"):
        wait_for(lambda: calls.append(1) is not None, timeout=0)
    assert calls == [1]


def test_wait_for_checks_once_more_at_the_deadline() -> None:
    deadline = time.monotonic() + 0.15
    # interval far beyond the timeout: the sleep is cut to the deadline, then a last check
    assert wait_for(lambda: time.monotonic() >= deadline, timeout=0.3, interval=60) is True


def test_wait_for_lets_predicate_errors_through() -> None:
    def broken() -> bool:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        wait_for(broken, timeout=5)


def test_wait_for_sees_another_thread() -> None:
    event = threading.Event()
    threading.Timer(0.05, event.set).start()
    assert wait_for(event.is_set, timeout=5) is True


# -- FakeElection ------------------------------------------------------------------------------


class Callbacks:
    def __init__(self) -> None:
        self.events: list[str] = []

    def elected(self) -> None:
        self.events.append("elected")

    def deposed(self) -> None:
        self.events.append("deposed")


ME = Member("me", "tcp://127.0.0.1:7001", 2)
OTHER = Member("other", "tcp://127.0.0.1:7002")


def test_fake_election_is_an_election() -> None:
    assert isinstance(FakeElection(), Election)


def test_single_member_leads_on_start_and_steps_down_on_stop() -> None:
    election, seen = FakeElection(), Callbacks()
    assert not election.is_leader() and election.leader() is None and election.members() == []
    election.start(ME, seen.elected, seen.deposed)
    assert seen.events == ["elected"] and election.events == ["elected"]
    assert election.is_leader() and election.leader() == ME and election.members() == [ME]
    election.stop()
    assert seen.events == ["elected", "deposed"]
    assert not election.is_leader() and election.leader() is None and election.members() == []
    election.stop()  # idempotent
    assert seen.events == ["elected", "deposed"]


def test_given_members_and_another_leader() -> None:
    election, seen = FakeElection([OTHER], leader="other"), Callbacks()
    election.start(ME, seen.elected, seen.deposed)
    assert seen.events == [] and not election.is_leader()
    assert election.leader() == OTHER
    assert [m.node_id for m in election.members()] == ["me", "other"]  # by node id

    election.set_leader("me")
    assert seen.events == ["elected"] and election.is_leader() and election.leader() == ME
    election.set_leader("me")  # no change, no callback
    assert seen.events == ["elected"]
    election.set_leader(OTHER)
    assert seen.events == ["elected", "deposed"] and election.leader() == OTHER
    election.set_leader(None)
    assert election.leader() is None and seen.events == ["elected", "deposed"]
    with pytest.raises(ValueError, match="nobody"):
        election.set_leader("nobody")


def test_given_members_default_to_the_starting_node_leading() -> None:
    election, seen = FakeElection([OTHER]), Callbacks()
    election.start(ME, seen.elected, seen.deposed)
    assert election.is_leader() and seen.events == ["elected"]


def test_no_leader_at_start() -> None:
    election, seen = FakeElection([OTHER], leader=""), Callbacks()
    election.start(ME, seen.elected, seen.deposed)
    assert election.leader() is None and seen.events == []


def test_set_leader_with_a_new_member_adds_it() -> None:
    election, seen = FakeElection(), Callbacks()
    election.start(ME, seen.elected, seen.deposed)
    election.set_leader(OTHER)
    assert election.leader() == OTHER and OTHER in election.members() and seen.events[-1] == "deposed"


def test_suspend_and_resume() -> None:
    election, seen = FakeElection(), Callbacks()
    election.start(ME, seen.elected, seen.deposed)
    assert not election.suspended()
    election.suspend()
    assert election.suspended() and election.is_leader()  # suspended is not deposed
    election.resume()
    assert not election.suspended() and seen.events == ["elected"]


def test_membership_changes() -> None:
    election, seen = FakeElection(), Callbacks()
    election.start(ME, seen.elected, seen.deposed)
    election.add_member(OTHER)
    assert [m.node_id for m in election.members()] == ["me", "other"]
    election.set_leader("other")
    election.remove_member("other")  # the leader's session expired
    assert election.leader() is None and election.members() == [ME]
    election.set_leader("me")
    election.remove_member("me")  # removing this node is stopping it
    assert seen.events == ["elected", "deposed", "elected", "deposed"] and election.members() == []


def test_callbacks_may_call_back_into_the_election() -> None:
    election = FakeElection()
    seen: list[bool] = []
    election.start(ME, lambda: seen.append(election.is_leader()), lambda: seen.append(election.is_leader()))
    election.stop()
    assert seen == [True, False]


# -- InMemoryDocumentStore URLs ------------------------------------------------------------------


def test_memory_stores_of_one_name_share_a_database() -> None:
    a, b = InMemoryDocumentStore("memory://unit-shared"), InMemoryDocumentStore("memory://unit-shared")
    other = InMemoryDocumentStore("memory://unit-other")
    private1, private2 = InMemoryDocumentStore(), InMemoryDocumentStore()
    rev = a.create(JOBS, "x", {"name": "x"})
    assert b.get(JOBS, "x")["_rev"] == rev
    assert other.find(JOBS, {}) == []
    private1.create(JOBS, "x", {"name": "x"})
    assert private2.find(JOBS, {}) == []
    a.close()
    with pytest.raises(DcronError, match="closed"):
        a.get(JOBS, "x")
    assert b.get(JOBS, "x")["name"] == "x"  # closing one store object leaves the others


def test_get_returns_copies() -> None:
    store = InMemoryDocumentStore()
    store.create(JOBS, "x", {"name": "x", "labels": {"a": 1}})
    doc = store.get(JOBS, "x")
    doc["labels"]["a"] = 2
    assert store.get(JOBS, "x")["labels"] == {"a": 1}


def test_memory_urls_and_plugin() -> None:
    with pytest.raises(ValidationError):
        InMemoryDocumentStore("sqlite:///x.db")
    assert testing.dcron_document_store("sqlite:///x.db", {}) is None
    store = testing.dcron_document_store("memory://unit-plugin", {})
    assert isinstance(store, InMemoryDocumentStore) and store.url == "memory://unit-plugin"
    found = Plugins(extra=[testing]).document_store("memory://unit-plugin", {})
    assert isinstance(found, InMemoryDocumentStore)
