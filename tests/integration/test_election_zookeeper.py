"""ZooKeeperElection against a real ZooKeeper: the standalone server and the 3-server ensemble.

Start them with ``bash scripts/services.sh start zookeeper``.  Every test has its own chroot and
2 s sessions.  Faults are injected the way kazoo's own test harness does it: sessions expired on
the server (a second client takes the session over and closes it) or only on the client side
(kazoo's ``_SESSION_EXPIRED`` request: the server keeps the old session until it times out), a
TCP proxy that cuts the connection (partition), a leader process killed with SIGKILL, and one
ensemble server killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import dcron_plugins.election_zookeeper as zookeeper
import pytest
from dcron_plugins.election_zookeeper import ZooKeeperElection, parse_url
from kazoo.client import KazooClient, KazooState
from kazoo.protocol.connection import _SESSION_EXPIRED

from libdcron import testing
from libdcron.abc import Member
from libdcron.errors import PluginError, UnavailableError, ValidationError
from libdcron.plugins import Plugins
from tests.conftest import ROOT, service

SESSION = 2.0
ZK_SCRIPT = ROOT / "scripts" / "services" / "zookeeper.sh"


def wait_for(condition: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> float:
    """Poll until ``condition()`` is true; return the seconds it took."""
    start = time.monotonic()
    testing.wait_for(condition, timeout, interval=0.005, message=f"waiting for {what}")
    return time.monotonic() - start


class Node:
    """One election with its callbacks recorded."""

    def __init__(self, hosts: str, chroot: str, node_id: str, session_timeout: float = SESSION) -> None:
        self.election = ZooKeeperElection(hosts, chroot, session_timeout=session_timeout, connect_timeout=5)
        self.member = Member(node_id, f"tcp://127.0.0.1:{5000 + len(node_id)}", labels={"id": node_id})
        self.events: list[str] = []
        self.threads: set[str] = set()

    @property
    def node_id(self) -> str:
        return self.member.node_id

    def start(self) -> Node:
        self.election.start(self.member, self._elected, self._deposed)
        return self

    def _elected(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append("elected")

    def _deposed(self) -> None:
        self.events.append("deposed")

    def count(self, event: str) -> int:
        return self.events.count(event)

    def member_ids(self) -> list[str]:
        return [m.node_id for m in self.election.members()]

    @property
    def client(self) -> KazooClient:
        return self.election._client


class Cluster:
    """Elections of one test sharing one chroot; stops them and deletes the chroot at the end."""

    def __init__(self, hosts: str) -> None:
        self.hosts = hosts
        self.chroot = f"/dcron-test-{uuid.uuid4().hex}"
        self.nodes: list[Node] = []

    def node(self, node_id: str, hosts: str | None = None, start: bool = True) -> Node:
        node = Node(hosts or self.hosts, self.chroot, node_id)
        self.nodes.append(node)
        return node.start() if start else node

    def start(self, count: int) -> list[Node]:
        return [self.node(f"node-{i}") for i in range(count)]

    def leaders(self) -> list[Node]:
        return [n for n in self.nodes if n.election.is_leader()]

    def close(self) -> None:
        for node in self.nodes:
            node.election.stop()
        client = KazooClient(hosts=self.hosts)
        client.start(timeout=10)
        try:
            client.delete(self.chroot, recursive=True)
        except Exception:
            pass
        finally:
            client.stop()
            client.close()


@pytest.fixture(
    params=[
        pytest.param(("ZK", "ZooKeeper"), id="standalone"),
        pytest.param(("ZK_ENSEMBLE", "ZooKeeper ensemble"), id="ensemble"),
    ]
)
def hosts(request: pytest.FixtureRequest) -> str:
    return service(*request.param)


@pytest.fixture
def cluster(hosts: str) -> Iterator[Cluster]:
    c = Cluster(hosts)
    try:
        yield c
    finally:
        c.close()


def expire_on_server(node: Node) -> None:
    """Expire the node's session for real: take it over with a second client, then close it."""
    session_id, password = node.client.client_id
    thief = KazooClient(hosts=node.election.hosts, client_id=(session_id, password), timeout=SESSION)
    thief.start(timeout=5)
    thief.stop()
    thief.close()


def expire_on_client(node: Node) -> None:
    """kazoo's harness: the client believes its session expired; the server keeps it until timeout."""
    node.client._call(_SESSION_EXPIRED, None)


class Proxy:
    """A TCP proxy to one ZooKeeper server that can cut the network (partition) and heal it."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.partition(":")
        self.upstream = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.cut = threading.Event()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.cut.is_set():
                conn.close()
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                conn.close()
                continue
            with self.lock:
                self.sockets.update((conn, up))
            threading.Thread(target=self._pump, args=(conn, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def partition(self) -> None:
        self.cut.set()
        with self.lock:
            sockets, self.sockets = self.sockets, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def heal(self) -> None:
        self.cut.clear()

    def close(self) -> None:
        self.partition()
        self.server.close()


# ---------------------------------------------------------------------------------------------
# Without a server
# ---------------------------------------------------------------------------------------------


def test_parse_url() -> None:
    assert parse_url("zk://a:2181,b:2181,c:2181/dcron/prod") == ("a:2181,b:2181,c:2181", "/dcron/prod")
    assert parse_url("zk://127.0.0.1:2181") == ("127.0.0.1:2181", "/dcron")
    assert parse_url("zk://127.0.0.1:2181/") == ("127.0.0.1:2181", "/dcron")
    assert parse_url("zk://h:1/x/") == ("h:1", "/x")
    for bad in ("zk:///dcron", "zk://a:1,,b:2/x", "zk://h:1/a/../b", "http://h:1/x"):
        with pytest.raises(ValidationError):
            parse_url(bad)


def test_hook_answers_zk_urls_only() -> None:
    assert zookeeper.dcron_election(url="file:///tmp/x", options={}) is None
    assert zookeeper.dcron_election(url="sqlite:///x", options={}) is None
    election = zookeeper.dcron_election(url="zk://127.0.0.1:1,127.0.0.1:2/c", options={"session_timeout": 3})
    assert isinstance(election, ZooKeeperElection)
    assert (election.hosts, election.chroot, election.session_timeout) == (
        "127.0.0.1:1,127.0.0.1:2",
        "/c",
        3.0,
    )
    assert zookeeper.dcron_election(url="zk://h:1", options={}).session_timeout == 4.0  # type: ignore[union-attr]
    for bad in ("soon", -1, 0):
        with pytest.raises(ValidationError, match="session_timeout"):
            zookeeper.dcron_election(url="zk://h:1/c", options={"session_timeout": bad})


def test_registered_as_a_plugin() -> None:
    plugins = Plugins(load_entry_points=False, extra=[zookeeper])
    assert isinstance(plugins.election("zk://127.0.0.1:1/c", {"session_timeout": 2}), ZooKeeperElection)
    with pytest.raises(PluginError):
        plugins.election("etcd://127.0.0.1:1/c", {})


def test_unreachable_zookeeper_raises_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    election = ZooKeeperElection(f"127.0.0.1:{port}", "/x", session_timeout=SESSION, connect_timeout=1)
    start = time.monotonic()
    with pytest.raises(UnavailableError, match="cannot reach ZooKeeper"):
        election.start(Member("n", "tcp://x:1"), lambda: None, lambda: None)
    assert time.monotonic() - start < 5
    election.stop()  # harmless after a failed start


# ---------------------------------------------------------------------------------------------
# Standalone server and ensemble
# ---------------------------------------------------------------------------------------------


@pytest.mark.zookeeper
def test_one_of_three_leads_and_all_agree(cluster: Cluster) -> None:
    nodes = cluster.start(3)
    wait_for(lambda: len(cluster.leaders()) == 1, what="a leader")
    leader = cluster.leaders()[0]
    assert leader is nodes[0]  # the first candidate wins
    wait_for(lambda: all(n.election.leader() == leader.member for n in nodes), what="agreement")
    assert leader.events == ["elected"]
    assert all(n.events == [] for n in nodes[1:])
    assert leader.threads == {"dcron-election"}  # callbacks run on the election's own thread
    assert not any(n.election.suspended() for n in nodes)


@pytest.mark.zookeeper
def test_members_lists_all_three_in_order(cluster: Cluster) -> None:
    nodes = [cluster.node(node_id) for node_id in ("node-c", "node-a", "node-b")]
    ids = ["node-a", "node-b", "node-c"]
    wait_for(lambda: all(n.member_ids() == ids for n in nodes), what="membership")
    members = nodes[0].election.members()
    assert members == sorted((n.member for n in nodes), key=lambda m: m.node_id)
    assert members[0].labels == {"id": "node-a"}  # the Member travels whole
    assert nodes[1].member_ids() == ids  # right as soon as start() returned
    nodes[2].election.stop()
    wait_for(lambda: all(n.member_ids() == ["node-a", "node-c"] for n in nodes[:2]), what="a member leaving")


@pytest.mark.zookeeper
def test_stopping_the_leader_elects_another_quickly(cluster: Cluster) -> None:
    nodes = cluster.start(3)
    wait_for(lambda: nodes[0].election.is_leader(), what="node-0 to lead")
    start = time.monotonic()
    nodes[0].election.stop()
    wait_for(lambda: nodes[1].election.is_leader(), timeout=2, what="node-1 to lead")
    failover = time.monotonic() - start
    print(f"\nfailover after a clean stop ({cluster.hosts}): {failover * 1000:.0f} ms")
    assert failover < 1.0
    assert nodes[0].events == ["elected", "deposed"]
    assert nodes[1].events == ["elected"]
    assert not nodes[0].election.is_leader()
    wait_for(lambda: nodes[2].election.leader() == nodes[1].member, what="node-2 to see node-1")
    wait_for(lambda: nodes[2].member_ids() == ["node-1", "node-2"], what="node-0 to leave")
    assert nodes[2].events == []


@pytest.mark.zookeeper
def test_killed_leader_process_is_replaced_after_session_timeout(cluster: Cluster) -> None:
    code = (
        "import sys, time\n"
        "from libdcron.abc import Member\n"
        "from dcron_plugins.election_zookeeper import ZooKeeperElection\n"
        f"e = ZooKeeperElection({cluster.hosts!r}, {cluster.chroot!r}, session_timeout={SESSION})\n"
        "e.start(Member('node-0', 'tcp://x:1'), lambda: print('LEADING', flush=True), lambda: None)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "LEADING"
        nodes = [cluster.node("node-1"), cluster.node("node-2")]
        wait_for(lambda: all(n.election.leader() is not None for n in nodes), what="the remote leader")
        assert nodes[0].election.leader().node_id == "node-0"  # type: ignore[union-attr]
        start = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        wait_for(lambda: nodes[0].election.is_leader(), timeout=SESSION + 3, what="node-1 to lead")
        failover = time.monotonic() - start
        print(f"\nfailover after SIGKILL of the leader ({cluster.hosts}): {failover * 1000:.0f} ms")
        assert failover < SESSION + 2
        wait_for(lambda: nodes[1].member_ids() == ["node-1", "node-2"], what="node-0 to leave")
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.zookeeper
@pytest.mark.parametrize("expire", [expire_on_server, expire_on_client], ids=["server", "client"])
def test_expired_leader_is_deposed_then_rejoins_by_itself(
    cluster: Cluster, expire: Callable[[Node], None]
) -> None:
    nodes = cluster.start(3)
    ids = [n.node_id for n in nodes]
    wait_for(lambda: nodes[0].election.is_leader(), what="node-0 to lead")
    old_session = nodes[0].client._session_id
    expire(nodes[0])
    wait_for(lambda: nodes[0].count("deposed") == 1, what="node-0 deposed")
    wait_for(lambda: nodes[1].election.is_leader(), timeout=SESSION + 3, what="node-1 to lead")
    # node-0 rejoined with a new session: a live member again, behind the others in the queue.
    wait_for(lambda: all(n.member_ids() == ids for n in nodes), timeout=SESSION + 3, what="node-0 to rejoin")
    wait_for(lambda: not nodes[0].election.suspended(), what="node-0 resumed")
    assert nodes[0].client._session_id != old_session
    wait_for(lambda: nodes[0].election.leader() == nodes[1].member, what="node-0 to see node-1")
    assert len(cluster.leaders()) == 1
    # ... and it can lead again.
    nodes[1].election.stop()
    nodes[2].election.stop()
    wait_for(lambda: nodes[0].election.is_leader(), what="node-0 to lead again")
    assert nodes[0].events == ["elected", "deposed", "elected"]


@pytest.mark.zookeeper
def test_expired_follower_rejoins(cluster: Cluster) -> None:
    nodes = cluster.start(2)
    wait_for(lambda: nodes[0].election.is_leader(), what="node-0 to lead")
    old_session = nodes[1].client._session_id
    expire_on_server(nodes[1])
    # (kazoo reconnects with a backoff, across an ensemble of three on a loaded machine: failed
    # once within 5 s in CI)
    wait_for(lambda: nodes[1].client._session_id not in (None, old_session), timeout=15, what="a new session")
    wait_for(lambda: not nodes[1].election.suspended(), what="node-1 to rejoin")
    wait_for(lambda: all(n.member_ids() == ["node-0", "node-1"] for n in nodes), what="membership")
    assert nodes[0].events == ["elected"]  # the leader noticed nothing
    assert nodes[1].events == []
    nodes[0].election.stop()
    wait_for(lambda: nodes[1].election.is_leader(), what="node-1 to take over")


@pytest.mark.zookeeper
def test_short_disconnection_suspends_without_deposing(cluster: Cluster) -> None:
    proxy = Proxy(cluster.hosts.split(",")[0])
    try:
        leader = cluster.node("node-0", hosts=f"127.0.0.1:{proxy.port}")
        other = cluster.node("node-1")
        wait_for(lambda: leader.election.is_leader(), what="node-0 to lead")
        session = leader.client._session_id
        proxy.partition()
        wait_for(leader.election.suspended, timeout=1, what="suspended")
        assert leader.election.is_leader()  # still holds it: it only must not dispatch
        time.sleep(SESSION / 4)
        proxy.heal()
        wait_for(lambda: not leader.election.suspended(), timeout=SESSION, what="resumed")
        assert leader.client._session_id == session
        assert leader.election.is_leader()
        assert leader.events == ["elected"]
        assert other.events == [] and other.election.leader() == leader.member
    finally:
        proxy.close()


@pytest.mark.zookeeper
def test_long_partition_deposes_leader_which_rejoins_after(cluster: Cluster) -> None:
    proxy = Proxy(cluster.hosts.split(",")[0])
    try:
        cut_off = cluster.node("node-0", hosts=f"127.0.0.1:{proxy.port}")
        others = [cluster.node("node-1"), cluster.node("node-2")]
        wait_for(lambda: cut_off.election.is_leader(), what="node-0 to lead")
        proxy.partition()
        start = time.monotonic()
        # Never two leaders that may dispatch (leading and not suspended) at once.
        while not (others[0].election.is_leader() and cut_off.count("deposed")):
            active = [n for n in cluster.nodes if n.election.is_leader() and not n.election.suspended()]
            assert len(active) <= 1
            assert time.monotonic() - start < SESSION + 3, "no failover during the partition"
            time.sleep(0.005)
        print(f"\nfailover during a partition ({cluster.hosts}): {(time.monotonic() - start) * 1000:.0f} ms")
        assert cut_off.election.suspended()
        proxy.heal()
        ids = ["node-0", "node-1", "node-2"]
        wait_for(
            lambda: all(n.member_ids() == ids for n in cluster.nodes), timeout=5, what="node-0 to rejoin"
        )
        wait_for(lambda: not cut_off.election.suspended(), what="node-0 resumed")
        wait_for(lambda: cut_off.election.leader() == others[0].member, what="node-0 to see node-1")
        assert cut_off.events == ["elected", "deposed"]
        assert len(cluster.leaders()) == 1
    finally:
        proxy.close()


@pytest.mark.zookeeper
def test_start_refuses_a_node_id_held_by_a_live_session(hosts: str) -> None:
    cluster = Cluster(hosts)
    try:
        cluster.node("twin")
        twin = Node(hosts, cluster.chroot, "twin", session_timeout=1.0)
        with pytest.raises(ValidationError, match="in use by a live node"):
            twin.start()
        assert twin.election._client is None
    finally:
        cluster.close()


@pytest.mark.zookeeper
def test_restarted_node_waits_for_its_old_session(hosts: str) -> None:
    cluster = Cluster(hosts)
    proxy = Proxy(hosts.split(",")[0])
    try:
        old = cluster.node("node-0", hosts=f"127.0.0.1:{proxy.port}")
        wait_for(old.election.is_leader, what="node-0 to lead")
        proxy.partition()  # the old process is gone for ZooKeeper: its session lingers until timeout
        start = time.monotonic()
        new = cluster.node("node-0")
        waited = time.monotonic() - start
        assert SESSION / 2 < waited < 2 * SESSION + 1
        wait_for(new.election.is_leader, timeout=SESSION, what="the restarted node to lead")
    finally:
        proxy.close()
        cluster.close()


# ---------------------------------------------------------------------------------------------
# Ensemble only: one ZooKeeper server dies
# ---------------------------------------------------------------------------------------------


def _zk_script(*args: str) -> None:
    subprocess.run(["bash", str(ZK_SCRIPT), *args], check=True, timeout=60)


@pytest.mark.zookeeper
def test_killing_the_ensemble_server_of_the_leader_keeps_the_session() -> None:
    hosts = service("ZK_ENSEMBLE", "ZooKeeper ensemble")
    if not (ROOT / ".services" / "zookeeper" / "member1" / "pid").exists():
        message = "the ensemble was not started by scripts/services/zookeeper.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = Cluster(hosts)
    killed: int | None = None
    try:
        nodes = cluster.start(3)
        wait_for(lambda: nodes[0].election.is_leader(), what="node-0 to lead")
        session = nodes[0].client._session_id
        states: list[str] = []
        nodes[0].client.add_listener(states.append)
        port = nodes[0].client._connection._socket.getpeername()[1]
        killed = port - 21810
        assert killed in (1, 2, 3), f"unexpected ensemble port {port}"
        _zk_script("kill-ensemble-member", str(killed))
        wait_for(lambda: KazooState.SUSPENDED in states, what="the leader to notice")
        wait_for(lambda: states[-1] == KazooState.CONNECTED, timeout=SESSION, what="reconnection")
        wait_for(lambda: not nodes[0].election.suspended(), what="the leader to resume")
        assert nodes[0].client._session_id == session  # the session survived
        assert nodes[0].election.is_leader()
        assert nodes[0].events == ["elected"]
        assert all(n.election.leader() == nodes[0].member for n in nodes)
        assert all(n.member_ids() == ["node-0", "node-1", "node-2"] for n in nodes)
        assert all(n.events == [] for n in nodes[1:])
        assert KazooState.LOST not in states
    finally:
        if killed is not None:
            _zk_script("start-ensemble-member", str(killed))
        cluster.close()
