"""The dashboard of a cluster node: three ``dcrond`` processes on ZooKeeper and pouchdb-server,
one of them serving ``--http`` (cluster mode has it off by default), as an operator would run it."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ..conftest import service
from .harness import Cluster, free_port, wait_for
from .test_cluster import cluster_args, executions, write

pytestmark = [pytest.mark.zookeeper, pytest.mark.couchdb]
TOKEN = "cluster-dashboard-" + uuid.uuid4().hex


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, extra_args=[*cluster_args(service("ZK", "ZooKeeper")), "--objects", f"file://{tmp_path / 'objects'}"])
    yield c
    c.stop()


def get(url: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def serves(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_cluster_nodes_dashboard_shows_the_cluster_and_follows_a_run_on_any_node(
    cluster: Cluster, tmp_path: Path
) -> None:
    http = free_port()
    base = f"http://127.0.0.1:{http}"
    for i in range(1, 4):
        extra = ["--http", f"tcp://127.0.0.1:{http}", "--http-token", TOKEN] if i == 1 else []
        cluster.add(f"n{i}", "--data-dir", str(cluster.root / f"data-n{i}"), *extra)
    cluster.wait_ready(3)
    for node in cluster.nodes[1:]:
        assert not serves(node.port + 1000), f"{node.name} serves a dashboard in cluster mode by default"
    assert get(base + "/cluster", token=None)[0] == 401

    page = wait_for(lambda: (r := get(base + "/cluster"))[0] == 200 and r[1].count(b"<td>n") >= 3 and r[1], 20)
    text = page.decode()
    for name in ("n1", "n2", "n3"):
        assert f"<td>{name}</td>" in text
    assert "unreachable" not in text

    script = write(tmp_path, "slow.sh", "echo first; sleep 3; echo second\n")
    names = [f"slow-{i}" for i in range(1, 4)]
    for name in names:
        cluster.dcron("schedule", name, "-c", "0 0 1 1 *", "-i", "sh", "-s", script)
    # Round-robin: the runs land on different nodes, not only on n1.
    ids = {cluster.json("run", name)["execution"] for name in names}
    assert len(ids) == 3

    def live_lines() -> dict[str, Any] | None:
        seen = {}
        for exec_id in ids:
            status, body = get(f"{base}/runs/{quote(exec_id, safe='')}/tail")
            answer = json.loads(body) if status == 200 else {}
            if answer.get("text") != "first\n" or answer.get("running") is not True:
                return None
            seen[exec_id] = answer
        return seen

    wait_for(live_lines, 15)  # every run's first line, live, whichever node runs it
    ran_on = {e["node"] for name in names for e in executions(cluster, name)}
    assert len(ran_on) >= 2, ran_on

    wait_for(lambda: all(e["status"] == "succeeded" for name in names for e in executions(cluster, name)), 20)
    for exec_id in ids:
        status, body = get(f"{base}/runs/{quote(exec_id, safe='')}/log")
        assert status == 200 and body == b"first\nsecond\n"
    status, jobs = get(base + "/jobs?q=slow")
    assert status == 200 and b"status-succeeded" in jobs
    status, metrics = get(base + "/metrics")
    assert status == 200 and b"dcron_jobs_loaded" in metrics
