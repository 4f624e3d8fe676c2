"""The single-host file-lock election, with real processes for the failover case."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from dcron_plugins.election_file import FileLockElection

from libdcron.abc import Member
from libdcron.errors import ValidationError
from libdcron.testing import wait_for


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def elected(self) -> None:
        with self.lock:
            self.events.append("elected")

    def deposed(self) -> None:
        with self.lock:
            self.events.append("deposed")


def test_one_leader_among_three_and_failover(tmp_path: Path) -> None:
    nodes = [FileLockElection(tmp_path) for _ in range(3)]
    recs = [Recorder() for _ in range(3)]
    for i, (node, rec) in enumerate(zip(nodes, recs, strict=True)):
        node.start(Member(f"n{i}", f"tcp://127.0.0.1:{7000 + i}"), rec.elected, rec.deposed)
    assert wait_for(lambda: sum(n.is_leader() for n in nodes) == 1)
    time.sleep(0.3)
    assert sum(n.is_leader() for n in nodes) == 1
    leader = next(n for n in nodes if n.is_leader())
    for n in nodes:
        assert n.leader() is not None
        assert n.leader() == leader.leader()
    assert [m.node_id for m in nodes[0].members()] == ["n0", "n1", "n2"]

    idx = nodes.index(leader)
    leader.stop()
    assert recs[idx].events == ["elected", "deposed"]
    rest = [n for n in nodes if n is not leader]
    assert wait_for(lambda: sum(n.is_leader() for n in rest) == 1)
    assert [m.node_id for m in rest[0].members()] == sorted(f"n{i}" for i in range(3) if i != idx)
    for n in rest:
        n.stop()


def test_node_id_in_use_is_refused(tmp_path: Path) -> None:
    a, b = FileLockElection(tmp_path), FileLockElection(tmp_path)
    a.start(Member("same", "tcp://127.0.0.1:1"), lambda: None, lambda: None)
    try:
        with pytest.raises(ValidationError, match="already in use"):
            b.start(Member("same", "tcp://127.0.0.1:2"), lambda: None, lambda: None)
    finally:
        a.stop()


CHILD = textwrap.dedent(
    """
    import sys, time
    from libdcron.abc import Member
    from dcron_plugins.election_file import FileLockElection
    e = FileLockElection(sys.argv[1])
    e.start(Member("child", "tcp://127.0.0.1:9"), lambda: print("elected", flush=True), lambda: None)
    time.sleep(600)
    """
)


def test_sigkilled_leader_is_replaced_and_leaves_membership(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "elected"
        other = FileLockElection(tmp_path)
        rec = Recorder()
        other.start(Member("other", "tcp://127.0.0.1:10"), rec.elected, rec.deposed)
        assert other.leader() is not None and other.leader().node_id == "child"  # type: ignore[union-attr]
        assert [m.node_id for m in other.members()] == ["child", "other"]
        time.sleep(0.3)
        assert not other.is_leader()
        killed = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert wait_for(other.is_leader, 3.0)
        took = time.monotonic() - killed
        assert took < 3.0
        assert [m.node_id for m in other.members()] == ["other"]
        other.stop()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
