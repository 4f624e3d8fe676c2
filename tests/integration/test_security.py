"""Hostile peers and hostile input against a live embedded node, over real CurveZMQ sockets.

Each test plays an attacker: a peer without keys, with an unknown key, with a client key sending
node commands, a node key forging DISPATCH or FINISHED, a client naming scripts outside the object
store or in endless buckets, oversized and deeply nested bodies.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import zmq

from libdcron.abc import EXECUTIONS
from libdcron.client import Client
from libdcron.config import NodeSettings
from libdcron.errors import ForbiddenError, NotFoundError, UnavailableError, ValidationError
from libdcron.model import format_instant, utcnow
from libdcron.node import Node
from libdcron.testing import wait_for
from libdcron.transport import protocol
from libdcron.transport.keys import ClientKeys, KeyPair, Security, load_public, load_secret, write_keypair
from libdcron.transport.zmq import ZmqTransport


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    settings = NodeSettings(data_dir=tmp_path / "data", listen="tcp://127.0.0.1:0", node_id="solo")
    n = Node(settings)
    n.start()
    wait_for(lambda: n.leader is not None and n.leader.ready.is_set())
    yield n
    n.stop(grace=1)


def keys_dir(node: Node) -> Path:
    assert node.settings.keys_dir is not None
    return node.settings.keys_dir


def client(node: Node, timeout: float = 3.0) -> Client:
    return Client(node.endpoint, timeout=timeout, data_dir=node.settings.data_dir)


def as_node(node: Node) -> ZmqTransport:
    """A transport holding the cluster key: what another node of the cluster would be."""
    cluster = load_secret(keys_dir(node) / "cluster.key_secret", "cluster key")
    return ZmqTransport(security=Security(ClientKeys(cluster.public, cluster)))


def script_body(name: str, schedule: str = "0 0 1 1 *", text: str = "sleep 30\n") -> dict[str, Any]:
    return {
        "name": name,
        "schedule": schedule,
        "interpreter": "sh",
        "script_content": base64.b64encode(text.encode()).decode(),
    }


# -- who may connect -------------------------------------------------------------------------


def test_keys_are_created_private_and_the_local_client_finds_them(node: Node) -> None:
    folder = keys_dir(node)
    for secret in ("cluster.key_secret", "client.key_secret"):
        assert (folder / secret).stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "clients" / "local.key").exists()
    with client(node) as c:
        assert c.call("PING")["node"] == "solo"


def test_a_peer_without_keys_gets_no_reply(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    plain = ZmqTransport()
    try:
        with pytest.raises(UnavailableError):
            plain.request(node.endpoint, "PING", {}, timeout=0.5, retries=0)
    finally:
        plain.close()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(node.endpoint)
        dealer.send_multipart([b"", *protocol.encode_request(protocol.Command.SCHEDULE, script_body("x"))])
        assert not dealer.poll(1000)
    finally:
        ctx.destroy(linger=0)
    with pytest.raises(NotFoundError):
        node.store.get("jobs", "x")


def test_an_unknown_key_is_refused_at_once_and_the_refusals_are_rate_limited(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    server = load_public(keys_dir(node) / "cluster.key", "server key")
    caplog.set_level(logging.WARNING, logger="libdcron.transport.zap")
    for _ in range(30):
        stranger = Client(node.endpoint, timeout=5, security=Security(ClientKeys(server, KeyPair.generate())))
        started = time.monotonic()
        with pytest.raises(ForbiddenError, match="refused this client's key"):
            stranger.call("PING")
        assert time.monotonic() - started < 2  # told at once, not after the time-out
        stranger.close()
    assert node.transport.server is not None and node.transport.server.denied == 30
    refusals = [r for r in caplog.records if "refused a connection" in r.getMessage()]
    assert 1 <= len(refusals) <= 6, len(refusals)


def test_a_wrong_server_key_gets_nothing(node: Node) -> None:
    me = load_secret(keys_dir(node) / "client.key_secret", "client key")
    wrong = Client(node.endpoint, timeout=0.5, security=Security(ClientKeys(KeyPair.generate().public, me)))
    with pytest.raises(UnavailableError):
        wrong.call("PING")
    wrong.close()


def test_client_keys_are_added_and_revoked_by_files_without_a_restart(node: Node, tmp_path: Path) -> None:
    pair = write_keypair(tmp_path / "alice", "alice")
    server = load_public(keys_dir(node) / "cluster.key", "server key")

    def alice() -> Client:
        return Client(node.endpoint, timeout=3, security=Security(ClientKeys(server, pair)))

    with alice() as c, pytest.raises(ForbiddenError):
        c.call("PING")
    write_keypair(keys_dir(node) / "clients", "alice", KeyPair(pair.public))
    time.sleep(1.1)  # the folder is re-read at most once a second
    with alice() as c:
        assert c.call("PING")["node"] == "solo"
    (keys_dir(node) / "clients" / "alice.key").unlink()
    time.sleep(1.1)
    with alice() as c, pytest.raises(ForbiddenError):
        c.call("PING")


def test_a_secret_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    write_keypair(tmp_path, "loose")
    os.chmod(tmp_path / "loose.key_secret", 0o644)
    with pytest.raises(ValidationError, match="chmod 600"):
        load_secret(tmp_path / "loose.key_secret", "cluster key")


# -- what a client key may do ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["DISPATCH", "FINISHED", "RUN_NOW"])
def test_a_client_key_may_not_send_node_commands(node: Node, command: str) -> None:
    with client(node) as c, pytest.raises(ForbiddenError, match="for nodes only"):
        c.call(command, {"leader": "solo"})


# -- forged node messages --------------------------------------------------------------------


def _dispatch_body(
    node: Node, name: str, fire: str, attempt: int = 1, leader: str = "solo"
) -> dict[str, Any]:
    with client(node) as c:
        job = c.call("SCHEDULE", script_body(name))["job"]
    return {"job": job, "fire_time": fire, "attempt": attempt, "leader": leader}


def test_dispatch_is_accepted_only_from_the_leader_for_sane_fire_times(node: Node) -> None:
    soon = format_instant(utcnow() + timedelta(seconds=2))
    transport = as_node(node)
    try:
        body = _dispatch_body(node, "victim", soon)
        with pytest.raises(ForbiddenError, match="the leader is solo"):
            transport.request(node.endpoint, "DISPATCH", {**body, "leader": "impostor"}, retries=0)
        for fire in ("2200-01-01T00:00:00Z", format_instant(utcnow() + timedelta(hours=1))):
            with pytest.raises(ValidationError, match="ahead"):
                transport.request(node.endpoint, "DISPATCH", {**body, "fire_time": fire}, retries=0)
        for attempt in (0, 4, -1, True, "1"):
            with pytest.raises(ValidationError, match="attempt"):
                transport.request(node.endpoint, "DISPATCH", {**body, "attempt": attempt}, retries=0)
        outside = {**body["job"], "script": "file:///etc/passwd"}
        with pytest.raises(ValidationError, match="outside the object stores"):
            transport.request(node.endpoint, "DISPATCH", {**body, "job": outside}, retries=0)
    finally:
        transport.close()
    assert node.worker.running() == []
    assert node.store.find(EXECUTIONS, {"job": "victim"}) == []


def test_far_future_dispatches_cannot_hold_the_run_slots(node: Node) -> None:
    transport = as_node(node)
    try:
        body = _dispatch_body(node, "hog", "2200-01-01T00:00:00Z")
        for attempt in (1, 2, 3):
            with pytest.raises(ValidationError):
                transport.request(node.endpoint, "DISPATCH", {**body, "attempt": attempt}, retries=0)
    finally:
        transport.close()
    assert node.worker.running() == []


def test_a_forged_finished_does_not_break_no_overlap(node: Node) -> None:
    with client(node) as c:
        c.call("SCHEDULE", script_body("long", text="sleep 20\n"))
        started = c.call("RUN", {"name": "long"})
    exec_id = started["execution"]
    leader = node.leader
    assert leader is not None
    wait_for(lambda: leader.jobs["long"].run is not None and leader.jobs["long"].run.node == "solo")
    doc = wait_for(lambda: node.store.find(EXECUTIONS, {"job": "long"}))[0]
    forged = {**{k: v for k, v in doc.items() if not k.startswith("_")}, "status": "succeeded"}
    transport = as_node(node)
    try:
        for fake in (
            {**forged, "node": "elsewhere"},
            {**forged, "incarnation": "not-the-worker"},
            {**forged, "attempt": 2},
        ):
            transport.request(node.endpoint, "FINISHED", {"execution": fake}, retries=0)
    finally:
        transport.close()
    run = leader.jobs["long"].run
    assert run is not None and run.exec_id("long") == exec_id  # still in progress: no second run starts
    with client(node) as c:
        assert c.call("RUN", {"name": "long"})["queued"] is True
    assert len(node.worker.running()) == 1


# -- script locations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "../../../../etc/passwd",
        "/etc/passwd",
        "scripts/../../../../etc/passwd",
        "scripts/%2e%2e/%2e%2e/etc/passwd",
        "s3://other-bucket/x.py",
        "swift://container/x.py",
    ],
)
def test_script_locations_outside_the_object_store_are_refused(node: Node, location: str) -> None:
    with client(node) as c, pytest.raises(ValidationError):
        c.call("SCHEDULE", {"name": "peek", "schedule": "* * * * *", "interpreter": "sh", "script": location})
    with pytest.raises(NotFoundError):
        node.store.get("jobs", "peek")


def test_a_file_url_inside_the_base_is_still_confined(node: Node) -> None:
    base = node.objects.base_url
    with client(node) as c:
        with pytest.raises(ValidationError, match="segments"):
            c.call(
                "SCHEDULE",
                {"name": "p", "schedule": "* * * * *", "interpreter": "sh", "script": base + "/x/../../x"},
            )
        with pytest.raises(ValidationError, match="outside"):
            c.call(
                "SCHEDULE",
                {"name": "p", "schedule": "* * * * *", "interpreter": "sh", "script": base + "-sibling/x"},
            )


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_bucket_names_in_a_loop_make_no_stores_and_cost_no_memory(node: Node) -> None:
    before = _rss()
    with client(node) as c:
        for i in range(120):
            with pytest.raises(ValidationError, match="outside the object stores"):
                c.call(
                    "SCHEDULE",
                    {
                        "name": f"b{i}",
                        "schedule": "* * * * *",
                        "interpreter": "python",
                        "script": f"s3://bucket-{i}/x.py",
                    },
                )
    grown = _rss() - before
    assert node._object_stores == {}
    assert grown < 30 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB over 120 bucket names"


def test_operator_listed_stores_are_allowed_and_made_once(tmp_path: Path) -> None:
    other = tmp_path / "shared-scripts"
    (other / "jobs").mkdir(parents=True)
    (other / "jobs" / "x.sh").write_text("echo hi\n")
    settings = NodeSettings(
        data_dir=tmp_path / "data",
        listen="tcp://127.0.0.1:0",
        node_id="solo",
        allowed_objects=f"file://{other}",
    )
    n = Node(settings)
    n.start()
    try:
        with client(n) as c:
            for name in ("a", "b"):
                c.call(
                    "SCHEDULE",
                    {
                        "name": name,
                        "schedule": "* * * * *",
                        "interpreter": "sh",
                        "script": f"file://{other}/jobs/x.sh",
                    },
                )
        assert list(n._object_stores) == [f"file://{other}"]
    finally:
        n.stop(grace=1)


# -- secrets, limits, robustness -------------------------------------------------------------


def test_status_and_the_start_up_log_redact_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="libdcron.node")
    settings = NodeSettings(data_dir=tmp_path / "data", listen="tcp://127.0.0.1:0", node_id="solo")
    n = Node(settings)
    # What a CouchDB URL with a password would look like in the settings (the embedded store runs).
    n.settings = dataclasses.replace(n.settings, election="zk://admin:hunter2@zk1:2181/dcron?token=abc")
    n.start()
    try:
        with client(n) as c:
            status = c.call("STATUS")
        assert "hunter2" not in str(status) and "abc" not in status["election"]
        assert status["election"] == "zk://admin:***@zk1:2181/dcron?token=***"
        assert "hunter2" not in caplog.text and "admin:***@zk1" in caplog.text
    finally:
        n.stop(grace=1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "trailing\n"}, "may hold only"),
        ({"name": "x" * 101}, "at most 100"),
        ({"schedule": "* " * 2_000_000}, "at most 256"),
        ({"tz": "Europe/" + "x" * 100}, "at most 64"),
        ({"interpreter": "p" * 100}, "at most 64"),
        ({"script_content": "A" * (6 * 1024 * 1024)}, "at most"),
    ],
)
def test_fields_have_limits(node: Node, body: dict[str, Any], message: str) -> None:
    started = time.monotonic()
    with client(node) as c, pytest.raises(ValidationError, match=message):
        c.call("SCHEDULE", {**script_body("limits"), **body})
    assert time.monotonic() - started < 2


def test_a_deeply_nested_body_is_refused_and_the_node_goes_on(node: Node) -> None:
    with client(node) as c:
        transport = c.transport
        frames = [
            protocol.HEADER,
            bytes([protocol.Command.STATUS]),
            b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}",
        ]
        sock = transport.context.socket(zmq.REQ)
        assert transport.security is not None
        sock.curve_serverkey = transport.security.client.server
        sock.curve_publickey = transport.security.client.me.public
        sock.curve_secretkey = transport.security.client.me.secret
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(node.endpoint)
        sock.send_multipart(frames)
        assert sock.poll(3000)
        with pytest.raises(Exception, match="deeper than"):
            protocol.decode_reply(sock.recv_multipart())
        sock.close()
        assert c.call("PING")["node"] == "solo"


def test_the_router_loop_recovers_when_it_fails(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    server = node.transport.server
    assert server is not None
    real = server._accept
    failures = threading.Event()

    def broken(router: zmq.Socket[bytes]) -> None:
        if not failures.is_set():
            failures.set()
            raise RuntimeError("injected failure in the router loop")
        real(router)

    monkeypatch.setattr(server, "_accept", broken)
    with client(node, timeout=3.0) as c:
        # The loop failed before reading the message; restarted, it reads and answers it.
        assert c.transport.request(node.endpoint, "PING", {}, timeout=3.0, retries=0)["node"] == "solo"
        assert c.call("PING")["node"] == "solo"
    assert failures.is_set() and server.restarts == 1


def test_a_handler_that_raises_anything_gets_an_error_reply(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(body: dict[str, Any]) -> dict[str, Any]:
        raise SystemExit("handler exits")

    monkeypatch.setitem(node.api.commands, "PING", explode)
    with client(node) as c:
        for _ in range(20):  # more than the 16 request threads: none of them died
            with pytest.raises(Exception, match="internal error"):
                c.call("PING")
        assert c.call("STATUS")["node"] == "solo"
