"""TAIL and ``dcron logs --follow``: a running execution's log, live, from any node.

Two real embedded nodes share one data folder (SQLite store, ``file://`` objects, file-lock
election, keys), as nodes of one cluster on one host do: whichever runs the job, the other forwards
TAIL to it.  The job prints a line, sleeps, prints another and sleeps (about 2.5 s in all).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from libdcron.client import Client
from libdcron.config import NodeSettings
from libdcron.errors import NotFoundError, UnavailableError, ValidationError
from libdcron.model import Execution, Status, parse_instant, utcnow
from libdcron.node import Node
from libdcron.testing import client_for, embedded_node, wait_for

from .test_cli_newuser import run_cli

YEARLY = "0 0 1 1 *"
PAST = parse_instant("2000-01-01T00:00:00Z")
SCRIPT = "echo first\nsleep 1.5\necho second\nsleep 1\n"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    root = tmp_path_factory.mktemp("tail")
    with embedded_node(root, node_id="tail-a") as a:
        b = Node(NodeSettings(data_dir=root / "data", listen="tcp://127.0.0.1:0", node_id="tail-b"))
        try:
            b.start()
            for n in (a, b):
                wait_for(lambda n=n: len(n.election.members()) == 2, 10, message="both nodes are members")
            (root / "job.sh").write_text(SCRIPT)
            with client_for(a) as c:
                c.schedule("slow", YEARLY, "sh", root / "job.sh")
            yield {"tail-a": a, "tail-b": b}
        finally:
            b.stop(grace=3)


@pytest.fixture(scope="module")
def clients(nodes: dict[str, Node]) -> Iterator[dict[str, Client]]:
    with client_for(nodes["tail-a"], timeout=5) as a, client_for(nodes["tail-b"], timeout=5) as b:
        yield {"tail-a": a, "tail-b": b}


def data(reply: dict[str, Any]) -> bytes:
    return base64.b64decode(reply["data"])


def start_run(client: Client) -> str:
    exec_id: str = client.run("slow")["execution"]
    wait_for(lambda: client.execution(exec_id), 5, message=f"{exec_id} recorded")
    return exec_id


def test_tail_while_running_from_both_nodes_then_the_uploaded_log(clients: dict[str, Client]) -> None:
    exec_id = start_run(clients["tail-a"])
    runner = clients["tail-a"].execution(exec_id)["node"]  # type: ignore[index]
    other = next(name for name in clients if name != runner)
    first = wait_for(lambda: data(r := clients[runner].tail(exec_id)) and r, 5, message="the first line")
    assert data(first) == b"first\n" and first["running"] is True and first["status"] == "running"
    assert first["offset"] == 0 and first["size"] == 6 and first["eof"] is True
    forwarded = clients[other].tail(exec_id)  # the node not running it asks the one that is
    assert data(forwarded) == b"first\n" and forwarded["running"] is True

    # From the first line's end: only what came after it (from the spool, or the uploaded log).
    rest = wait_for(lambda: data(r := clients[other].tail(exec_id, 6)) and r, 5, message="the second line")
    assert data(rest) == b"second\n" and rest["offset"] == 6 and rest["size"] == 13

    done = wait_for(lambda: (r := clients[other].tail(exec_id))["running"] is False and r, 10, message="the end")
    assert done["status"] == "succeeded" and done["eof"] is True
    assert data(done) == b"first\nsecond\n" and done["size"] == 13
    assert data(clients[runner].tail(exec_id, 13)) == b""
    with pytest.raises(ValidationError, match="offset 14 is past the end of the log"):
        clients[runner].tail(exec_id, 14)


def test_a_forwarded_tail_is_never_forwarded_again(clients: dict[str, Client], nodes: dict[str, Node]) -> None:
    exec_id = start_run(clients["tail-a"])
    runner = clients["tail-a"].execution(exec_id)["node"]  # type: ignore[index]
    other = next(name for name in nodes if name != runner)
    reply = nodes[other].api.handle("TAIL", {"execution": exec_id, "offset": 0, "local": True})
    assert reply["running"] is True and reply["data"] == "" and reply["status"] == "running"
    wait_for(lambda: clients[runner].tail(exec_id)["running"] is False, 10, message="the run's end")


def test_follow_prints_the_log_as_it_grows_until_the_end(nodes: dict[str, Node], clients: dict[str, Client]) -> None:
    exec_id = clients["tail-b"].run("slow")["execution"]  # followed at once: not recorded yet
    code, out, err = run_cli(nodes["tail-b"], "logs", "--follow", exec_id)
    assert (code, out) == (0, "first\nsecond\n"), err
    assert clients["tail-a"].execution(exec_id)["status"] == "succeeded"  # type: ignore[index]
    code, out, _ = run_cli(nodes["tail-a"], "logs", "-f", exec_id)  # an ended run: its log
    assert (code, out) == (0, "first\nsecond\n")


def test_follow_log_yields_chunks_until_the_end(clients: dict[str, Client]) -> None:
    exec_id = start_run(clients["tail-a"])
    assert b"".join(clients["tail-b"].follow_log(exec_id, poll=0.1, deadline=10)) == b"first\nsecond\n"


def test_bad_requests_and_unknown_executions(clients: dict[str, Client], nodes: dict[str, Node]) -> None:
    client = clients["tail-a"]
    with pytest.raises(NotFoundError, match="no execution 'slow@nope#1'"):
        client.tail("slow@nope#1")
    with pytest.raises(ValidationError, match="offset must be an integer between 0"):
        client.tail("slow@nope#1", -1)
    with pytest.raises(ValidationError, match="length must be an integer between 1 and 1048576"):
        client.tail("slow@nope#1", 0, length=2 << 20)
    with pytest.raises(ValidationError, match="execution is required"):
        client.call("TAIL", {})
    # Running on a node that is not (any more) a member of the cluster (a job the leader never saw).
    gone = Execution(job="ghost", fire_time=PAST, attempt=1, node="gone", status=Status.RUNNING)
    nodes["tail-a"].api.records.create_execution(gone)
    with pytest.raises(UnavailableError, match=f"node gone running {gone.id} is not reachable"):
        client.tail(gone.id)
    # An end recorded without a log, from a run that never started: nothing will come.
    lost = Execution(job="ghost", fire_time=PAST, attempt=2, node="gone", status=Status.LOST, ended=utcnow())
    nodes["tail-a"].api.records.create_execution(lost)
    reply = client.tail(lost.id)
    assert (reply["running"], reply["eof"], reply["data"], reply["status"]) == (False, True, "", "lost")
