"""Three real ``dcrond`` nodes on ZooKeeper and a CouchDB-API server: failures on real processes.

ZooKeeper (standalone and a 3-server ensemble) and pouchdb-server are started by
``scripts/services.sh start``; each test has its own ZooKeeper chroot and database prefix.
"""

from __future__ import annotations

import collections
import itertools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libdcron.model import parse_instant

from ..conftest import ROOT, service
from .harness import Cluster, NodeProc, wait_for

SESSION_TIMEOUT = 2.0

pytestmark = [pytest.mark.zookeeper, pytest.mark.couchdb]


def cluster_args(zk: str) -> list[str]:
    couch = service("COUCHDB", "CouchDB-API server (pouchdb-server)")
    tag = "t" + uuid.uuid4().hex[:10]
    return [
        "--election", f"zk://{zk}/{tag}",
        "--store", f"{couch}/{tag}",
        "-o", f"session_timeout={SESSION_TIMEOUT:g}",
    ]  # fmt: skip


@pytest.fixture(params=["standalone", "ensemble"])
def zk(request: pytest.FixtureRequest) -> str:
    if request.param == "standalone":
        return service("ZK", "ZooKeeper")
    return service("ZK_ENSEMBLE", "ZooKeeper ensemble")


@pytest.fixture
def zk_cluster(tmp_path: Path, zk: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, extra_args=[*cluster_args(zk), "--objects", f"file://{tmp_path / 'objects'}"])
    yield c
    c.stop()


def start_three(c: Cluster) -> None:
    for i in range(1, 4):
        # Each node has its own data folder, as on separate hosts; they share only the services.
        c.add(f"n{i}", "--data-dir", str(c.root / f"data-n{i}"))
    c.wait_ready(3)


def executions(c: Cluster, name: str) -> list[dict[str, Any]]:
    return list(c.json("executions", name, "--limit", "500")["executions"])


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def test_leader_sigkill_failover_keeps_every_fire_time_once_and_no_overlap(
    zk_cluster: Cluster, tmp_path: Path
) -> None:
    c = zk_cluster
    start_three(c)
    ledger = tmp_path / "ledger.txt"
    tick = f'echo "$DCRON_FIRE_TIME $DCRON_ATTEMPT $DCRON_NODE" >> {ledger}\n'
    c.dcron("schedule", "tick", "-c", "*/4 * * * * *", "-i", "sh", "-s", write(tmp_path, "tick.sh", tick))
    c.dcron("schedule", "beat", "-c", "* * * * * *", "-i", "sh", "-s", write(tmp_path, "beat.sh", "true\n"))
    c.dcron(
        "schedule", "long", "-c", "*/2 * * * * *", "-i", "sh", "-s", write(tmp_path, "long.sh", "sleep 5\n")
    )
    wait_for(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 2, 20)

    old = c.leader()
    killed_at = time.time()
    old.kill()
    new = c.leader()
    assert new is not old

    def beat_after_kill() -> float | None:
        rows = [r for r in executions(c, "beat") if r["started"] and r["node"] != old.name]
        starts = [parse_instant(r["started"]).timestamp() for r in rows]
        later = [s for s in starts if s > killed_at + 0.5]
        return min(later) if later else None

    first = wait_for(beat_after_kill, SESSION_TIMEOUT + 10)
    assert first - killed_at < SESSION_TIMEOUT + 2.0, (
        f"dispatching again only {first - killed_at:.1f}s after the kill"
    )
    time.sleep(9)
    stop_at = time.time()

    # Every fire time of `tick` ran, once (or again only after an attempt lost with the killed node).
    rows = executions(c, "tick")
    by_fire: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in rows:
        by_fire[row["fire_time"]].append(row)
    first_fire = min(parse_instant(f).timestamp() for f in by_fire)
    expected = [t for t in range(int(first_fire), int(stop_at) - 3) if t % 4 == 0]
    have = {parse_instant(f).timestamp() for f in by_fire}
    assert not [t for t in expected if t not in have], f"lost fire times\n{c.logs()}"
    lines = collections.Counter(tuple(line.split()[:2]) for line in ledger.read_text().splitlines())
    assert all(n == 1 for n in lines.values()), f"a run happened twice: {lines}"
    for _fire, attempts in by_fire.items():
        assert sum(a["status"] == "succeeded" for a in attempts) <= 1, attempts
        for a in attempts:
            if a["attempt"] > 1:
                prev = next(p for p in attempts if p["attempt"] == a["attempt"] - 1)
                assert prev["status"] == "lost" and prev["node"] == old.name, attempts

    # `long` never overlapped, across the leader change either.
    spans = sorted(
        (parse_instant(r["started"]), parse_instant(r["ended"]), r["node"])
        for r in executions(c, "long")
        if r["status"] == "succeeded"
    )
    for a, b in itertools.pairwise(spans):
        assert b[0] >= a[1], f"runs of `long` overlap: {a} {b}"


def node_of(c: Cluster, name: str) -> NodeProc:
    return next(n for n in c.nodes if n.name == name)


def test_worker_sigkill_mid_run_is_lost_and_retried_elsewhere(zk_cluster: Cluster, tmp_path: Path) -> None:
    c = zk_cluster
    start_three(c)
    leader = c.leader()
    script = write(
        tmp_path,
        "v.sh",
        'if [ "$DCRON_ATTEMPT" = 1 ]; then sleep 120; fi\necho "attempt $DCRON_ATTEMPT on $DCRON_NODE"\n',
    )
    # Round robin: of three jobs run one after the other, at least one lands on a non-leader worker.
    row: dict[str, Any] | None = None
    for i in range(3):
        name = f"victim{i}"
        c.dcron("schedule", name, "-c", "0 0 1 1 *", "-i", "sh", "-s", script)
        c.dcron("run", name)
        found = wait_for(
            lambda name=name: next((r for r in executions(c, name) if r["status"] == "running"), None), 10
        )
        if found["node"] != leader.name:
            row = found
            break
    assert row is not None, "no run landed on a non-leader worker"
    name = row["job"]
    victim = node_of(c, row["node"])
    killed_at = time.time()
    victim.kill()

    def lost() -> dict[str, Any] | None:
        for r in executions(c, name):
            if r["id"] == row["id"] and r["status"] == "lost":
                return r
        return None

    lost_row = wait_for(lost, SESSION_TIMEOUT + 15)
    assert victim.name in lost_row["reason"]

    def retried() -> dict[str, Any] | None:
        for r in executions(c, name):
            if r["fire_time"] == row["fire_time"] and r["attempt"] == 2 and r["status"] == "succeeded":
                return r
        return None

    second = wait_for(retried, 20)
    assert second["node"] != victim.name
    assert f"attempt 2 on {second['node']}" in c.dcron("logs", second["id"]).stdout
    assert time.time() - killed_at < 60


def test_couchdb_outage_of_ten_seconds_loses_no_execution(zk_cluster: Cluster, tmp_path: Path) -> None:
    c = zk_cluster
    start_three(c)
    ledger = tmp_path / "ledger.txt"
    script = f'echo "$DCRON_FIRE_TIME $DCRON_ATTEMPT $DCRON_NODE" >> {ledger}\n'
    c.dcron("schedule", "steady", "-c", "*/2 * * * * *", "-i", "sh", "-s", write(tmp_path, "s.sh", script))
    wait_for(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 2, 20)
    pouch = str(ROOT / "scripts" / "services" / "pouchdb.sh")
    subprocess.run(["bash", pouch, "stop"], check=True, capture_output=True)
    down_at = time.time()
    try:
        time.sleep(10)
        during = [line for line in ledger.read_text().splitlines()
                  if parse_instant(line.split()[0]).timestamp() > down_at + 1]  # fmt: skip
        assert len(during) >= 3, "the schedule must go on while the database is down"
        assert all(n.alive() for n in c.nodes)
    finally:
        subprocess.run(["bash", pouch, "start"], check=True, capture_output=True)
    time.sleep(3)

    def all_recorded() -> bool:
        recorded = {
            (r["fire_time"], str(r["attempt"])) for r in executions(c, "steady") if r["status"] == "succeeded"
        }
        ran = {tuple(line.split()[:2]) for line in ledger.read_text().splitlines()}
        return ran <= recorded

    wait_for(all_recorded, 60, interval=1.0)
    logs = "\n".join(n.log() for n in c.nodes)
    assert "journaling" in logs and "replayed" in logs


def test_paused_leader_loses_its_session_and_rejoins_by_itself(zk_cluster: Cluster, tmp_path: Path) -> None:
    c = zk_cluster
    start_three(c)
    c.dcron("schedule", "beat", "-c", "* * * * * *", "-i", "sh", "-s", write(tmp_path, "b.sh", "true\n"))
    old = c.leader()
    assert old.proc is not None
    os.kill(old.proc.pid, signal.SIGSTOP)  # its ZooKeeper session expires while it sleeps
    try:
        others = [n for n in c.nodes if n is not old]

        def new_leader() -> str | None:
            status = c.json("status", endpoint=others[0].endpoint)
            leader = status["leader"]
            return leader["node_id"] if leader and leader["node_id"] != old.name else None

        wait_for(new_leader, SESSION_TIMEOUT + 10)
        time.sleep(1)
    finally:
        os.kill(old.proc.pid, signal.SIGCONT)

    def rejoined() -> bool:
        status = c.json("status", endpoint=old.endpoint)
        members = {m["node_id"] for m in status["members"]}
        return members == {"n1", "n2", "n3"} and not status["is_leader"]

    wait_for(rejoined, 20)
    assert "stepped down" in old.log()
    # One leader, and no fire time ran twice across the pause.
    time.sleep(3)
    leaders = [c.json("status", endpoint=n.endpoint)["is_leader"] for n in c.nodes]
    assert leaders.count(True) == 1
    fires = [r["fire_time"] for r in executions(c, "beat") if r["attempt"] == 1]
    assert len(fires) == len(set(fires))


def test_job_changes_through_any_node_reach_the_leader_within_a_second(
    zk_cluster: Cluster, tmp_path: Path
) -> None:
    c = zk_cluster
    start_three(c)
    leader = c.leader()
    other = next(n for n in c.nodes if n is not leader)
    script = write(tmp_path, "f.sh", "true\n")
    c.dcron("schedule", "fresh", "-c", "* * * * * *", "-i", "sh", "-s", script, endpoint=other.endpoint)
    registered = time.time()
    first = wait_for(lambda: executions(c, "fresh")[-1] if executions(c, "fresh") else None, 10)
    # Learned within a second, then fired at the next whole second.
    assert parse_instant(first["fire_time"]).timestamp() - registered <= 2.0
    c.dcron("disable", "fresh", endpoint=other.endpoint)
    disabled = time.time()
    time.sleep(2.5)
    late = [r for r in executions(c, "fresh") if parse_instant(r["fire_time"]).timestamp() > disabled + 1.0]
    assert late == [], "the leader kept firing a job disabled through another node"
