"""What a new user trips over (issue 11), each on a real embedded node: dead endpoints answered in
about a second, endpoints without ``tcp://``, mistyped script paths, ``logs`` of a run that never
started, ``status`` listing the runs in progress, aligned ``executions``, ``--request-timeout``,
``--help`` texts, and the library's ``update=True`` said as ``--update`` by the CLI."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from click.testing import CliRunner

from libdcron import cli as cli_module
from libdcron.cli import cli, main
from libdcron.cli_context import Ctx
from libdcron.client import Client, normalize_endpoint
from libdcron.errors import ConflictError, NotFoundError, UnavailableError, ValidationError
from libdcron.node import Node
from libdcron.testing import client_for, embedded_node, wait_for
from libdcron.transport.keys import write_keypair
from libdcron.transport.protocol import HEADER
from libdcron.transport.zmq import ZmqTransport

YEARLY = "0 0 1 1 *"
#: The CLI reads DCRON_* variables: none of the caller's may reach the commands under test.
CLEAN_ENV: dict[str, str | None] = {
    k: None for k in os.environ if k.startswith("DCRON_") and not k.startswith("DCRON_TEST_")
}


def dead_endpoint() -> str:
    """A loopback endpoint where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("newuser")


@pytest.fixture(scope="module")
def node(root: Path) -> Iterator[Node]:
    with embedded_node(root, node_id="newuser") as n:
        yield n


@pytest.fixture(scope="module")
def client(node: Node) -> Iterator[Client]:
    with client_for(node, timeout=10) as c:
        yield c


def run_cli(node: Node | None, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``dcron ARGS`` through :func:`libdcron.cli.main` (errors as one line and exit 1)."""
    base = ["--endpoint", node.endpoint, "--data-dir", str(node.settings.data_dir)] if node else []
    runner = CliRunner()
    with runner.isolation(env={**CLEAN_ENV, **(env or {})}) as (out, err, _):
        try:
            main([*base, *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue().decode(), err.getvalue().decode()


# -- a dead endpoint costs about a second, and the next endpoint is tried ----------------------


def test_a_dead_endpoint_is_reported_in_about_a_second(client: Client, node: Node) -> None:
    dead = dead_endpoint()
    with Client(dead, timeout=10, security=client.transport.security) as alone:
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="did not answer STATUS: nothing listens there"):
            alone.status()
        assert time.monotonic() - started < 2.5  # not 10 s x 2 tries


def test_the_next_endpoint_is_tried_after_a_dead_one(client: Client, node: Node) -> None:
    endpoints = f"{dead_endpoint()},{node.endpoint}"
    with Client(endpoints, timeout=10, security=client.transport.security) as both:
        started = time.monotonic()
        assert both.status()["node"] == "newuser"
        assert time.monotonic() - started < 2.5
    code, out, err = run_cli(node, "--endpoint", endpoints, "status")
    assert code == 0 and out.startswith("node: newuser"), err


def test_every_dead_endpoint_is_named_with_its_reason(client: Client) -> None:
    first, second = dead_endpoint(), dead_endpoint()
    with Client([first, second], timeout=10, security=client.transport.security) as none:
        started = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            none.call("PING")
        assert time.monotonic() - started < 4.5
    message = str(caught.value)
    assert message.startswith("no node answered: ")
    assert f"node {first} did not answer PING" in message and f"node {second} did not answer PING" in message


def test_a_wrong_server_key_fails_its_handshake_quickly(node: Node, client: Client, tmp_path: Path) -> None:
    write_keypair(tmp_path, "other-cluster")
    wrong = str(tmp_path / "other-cluster.key")
    keys = Path(node.settings.keys_dir or "")
    with Client(node.endpoint, timeout=10, key=str(keys / "client.key_secret"), server_key=wrong) as bad:
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="failed its handshake; is it a dcron node"):
            bad.status()
        assert time.monotonic() - started < 2.5


def test_a_node_that_stops_is_noticed_quickly_on_a_pooled_socket(root: Path) -> None:
    with embedded_node(root / "short", node_id="short") as short:
        c = client_for(short, timeout=10)
        assert c.status()["node"] == "short"  # the socket is now pooled, connected
        endpoint = short.endpoint
    try:
        started = time.monotonic()
        with pytest.raises(UnavailableError, match=f"node {endpoint} did not answer STATUS"):
            c.status()
        assert time.monotonic() - started < 2.5
    finally:
        c.close()


def test_a_live_but_silent_node_still_gets_the_whole_timeout_and_a_retry() -> None:
    """Lazy Pirate for a node that is up (the handshake succeeds) but does not answer."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    received: list[list[bytes]] = []
    stop = threading.Event()

    def swallow() -> None:
        while not stop.is_set():
            if router.poll(50):
                received.append(router.recv_multipart())

    thread = threading.Thread(target=swallow, daemon=True)
    thread.start()
    transport = ZmqTransport()
    try:
        started = time.monotonic()
        with pytest.raises(UnavailableError, match=r"within 0\.4s \(2 tries\)"):
            transport.request(f"tcp://127.0.0.1:{port}", "PING", {}, timeout=0.4, retries=1)
        assert time.monotonic() - started >= 0.8
        assert len(received) == 2 and received[0][2] == HEADER
    finally:
        stop.set()
        thread.join(2)
        transport.close()
        router.close(linger=0)
        ctx.term()


# -- endpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:8570", "tcp://127.0.0.1:8570"),
        ("node1.example.com:7571", "tcp://node1.example.com:7571"),
        ("[::1]:7571", "tcp://[::1]:7571"),
        (" tcp://127.0.0.1:7571 ", "tcp://127.0.0.1:7571"),
        ("ipc:///run/dcron.sock", "ipc:///run/dcron.sock"),
    ],
)
def test_endpoints_are_normalised(given: str, expected: str) -> None:
    assert normalize_endpoint(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("http://127.0.0.1:7571", "not http://"),
        ("tcp://127.0.0.1", "tcp://HOST:PORT"),
        ("127.0.0.1", "tcp://HOST:PORT"),
        ("tcp://127.0.0.1:99999", "port from 1 to 65535"),
        ("localhost:port", "tcp://HOST:PORT"),
    ],
)
def test_bad_endpoints_are_refused_clearly(given: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        normalize_endpoint(given)


def test_an_endpoint_without_tcp_works_from_the_cli(node: Node) -> None:
    bare = node.endpoint.removeprefix("tcp://")
    code, out, err = run_cli(None, "--endpoint", bare, "--data-dir", str(node.settings.data_dir), "status")
    assert code == 0 and out.startswith("node: newuser"), err
    code, out, err = run_cli(None, "--endpoint", "http://127.0.0.1:1", "status")
    assert code == 1 and err.startswith("error: endpoint 'http://127.0.0.1:1': ") and err.count("\n") == 1
    assert "internal error" not in err


# -- scripts: a mistyped local path ---------------------------------------------------------------


def test_a_missing_local_path_is_not_taken_for_an_object_key(client: Client, root: Path) -> None:
    for path in ("./helo.py", "../helo.py", str(root / "helo.py"), "~/no-such-dir/helo.py"):
        with pytest.raises(ValidationError, match=r"no local file .* exists \(in .*\); nor is it an object key"):
            client.schedule("typo", YEARLY, "python", path)
    with pytest.raises(ValidationError, match="no local file"):
        client.schedule("typo", YEARLY, "python", root / "helo.py")  # a Path is always a local file


def test_a_bare_name_that_is_nowhere_says_both(client: Client) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.schedule("typo", YEARLY, "python", "helo.py")
    message = str(caught.value)
    assert "/objects/helo.py not found in object storage" in message
    assert "no local file 'helo.py' exists either" in message


def test_schedule_many_reports_a_missing_local_path_as_a_failure(client: Client, root: Path) -> None:
    good = root / "good.sh"
    good.write_text("echo good\n")
    jobs = [
        {"name": "many-good", "schedule": YEARLY, "interpreter": "sh", "script": str(good)},
        {"name": "many-typo", "schedule": YEARLY, "interpreter": "sh", "script": "./nope.sh"},
        {"name": "many-key", "schedule": YEARLY, "interpreter": "sh", "script": "nope.sh"},
    ]
    reply = client.schedule_many(jobs)
    assert reply["created"] == ["many-good"]
    failed = {f["index"]: f for f in reply["failed"]}
    assert sorted(failed) == [1, 2]
    assert failed[1]["name"] == "many-typo" and "no local file './nope.sh'" in failed[1]["message"]
    assert failed[2]["error"] == "NotFoundError" and "no local file 'nope.sh' exists either" in failed[2]["message"]


def test_the_cli_says_no_local_file(node: Node) -> None:
    code, out, err = run_cli(node, "schedule", "typo", "-c", YEARLY, "-i", "python", "-s", "./helo.py")
    assert code == 1 and out == ""
    assert err.startswith("error: no local file './helo.py' exists") and err.count("\n") == 1


# -- a taken name: update=True in the library, --update in the CLI ------------------------------------


def test_a_taken_name_says_update_true_in_python_and_update_flag_in_the_cli(
    client: Client, node: Node, root: Path
) -> None:
    script = root / "taken.sh"
    script.write_text("echo taken\n")
    client.schedule("taken", YEARLY, "sh", script)
    with pytest.raises(ConflictError, match=r"pass update=True to change it"):
        client.schedule("taken", YEARLY, "sh", script)
    code, _, err = run_cli(node, "schedule", "taken", "-c", YEARLY, "-i", "sh", "-s", str(script))
    assert code == 1 and err == "error: a job named 'taken' already exists; pass --update to change it\n"
    jobs = root / "jobs.jsonl"
    jobs.write_text(json.dumps({"name": "taken", "schedule": YEARLY, "interpreter": "sh", "script": str(script)}))
    code, out, _ = run_cli(node, "schedule-many", str(jobs))
    assert code == 1 and "failed #0 taken: a job named 'taken' already exists; pass --update" in out


# -- logs of a run that never started ------------------------------------------------------------------


def test_logs_of_a_run_that_never_started_give_its_reason(client: Client, node: Node) -> None:
    url = node.objects.url_for("jobs/vanishing.sh")
    node.objects.put_bytes(b"echo here\n", url)
    client.schedule("vanishing", YEARLY, "sh", "jobs/vanishing.sh")
    node.objects.delete(url)
    execution = client.run("vanishing")["execution"]
    done = client.wait_execution(execution, timeout=20)
    assert done["status"] == "error" and done["log"] is None
    with pytest.raises(NotFoundError, match=r"never started, so it has no log: script .* not found"):
        client.logs(execution)
    code, out, err = run_cli(node, "logs", execution)
    assert code == 1 and out == ""
    assert err.startswith(f"error: execution {execution} never started, so it has no log: script ")
    assert "(yet)" not in err


def test_execution_looks_one_up_and_refuses_a_malformed_id(client: Client, root: Path) -> None:
    script = root / "once.sh"
    script.write_text("echo once\n")
    client.schedule("once", YEARLY, "sh", script)
    assert client.execution("once@2000-01-01T00:00:00Z#1") is None
    execution = client.run("once")["execution"]
    assert client.wait_execution(execution, timeout=20)["status"] == "succeeded"
    found = client.execution(execution)
    assert found is not None and found["id"] == execution and found["log"]
    with pytest.raises(NotFoundError, match="no job named 'nobody'"):
        client.execution("nobody@2000-01-01T00:00:00Z#1")
    with pytest.raises(ValidationError, match="not an execution id"):
        client.execution("not-an-id")


# -- status lists the runs in progress; executions line up -------------------------------------------


def test_status_lists_the_runs_in_progress(client: Client, node: Node, root: Path) -> None:
    script = root / "slow.sh"
    script.write_text("sleep 4\n")
    client.schedule("slow", YEARLY, "sh", script)
    execution = client.run("slow")["execution"]
    wait_for(lambda: any(r["id"] == execution for r in client.status()["running"]), 10)
    code, out, err = run_cli(node, "status")
    assert code == 0, err
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("running here: "))
    header, *rows = lines[at + 1 :]
    assert header.split() == ["JOB", "FIRE", "TIME", "ATT", "NODE", "STARTED"]
    fire_time = execution.split("@", 1)[1].split("#")[0]
    row = next(r for r in rows if r.split()[0] == "slow")
    assert row.split()[1:4] == [fire_time, "1", "newuser"]
    client.wait_execution(execution, timeout=20)


def test_executions_line_up_with_fractional_fire_times(client: Client, node: Node, root: Path) -> None:
    script = root / "mixed.sh"
    script.write_text("echo mixed\n")
    client.schedule("mixed", "*/1 * * * * *", "sh", script)  # whole-second fire times
    wait_for(lambda: [e for e in client.executions("mixed") if e["log"]], 15)
    client.disable("mixed")
    # A run already sent ahead still runs: let it end, so that the run below is not queued behind it.
    time.sleep(1.2)
    wait_for(lambda: all(e["status"] != "running" for e in client.executions("mixed", limit=100)), 10)
    client.wait_execution(client.run("mixed")["execution"], timeout=20)  # a fractional fire time
    rows = client.executions("mixed", limit=100)
    assert any("." in r["fire_time"] for r in rows) and any("." not in r["fire_time"] for r in rows)
    code, out, err = run_cli(node, "executions", "mixed", "--limit", "100")
    assert code == 0, err
    header, *lines = [line for line in out.splitlines() if "reason:" not in line]
    columns = [header.index(name) for name in ("STATUS", "NODE", "STARTED", "ENDED", "LOG")]
    for line in lines:
        for column in columns:
            assert line[column - 1] == " " and line[column] != " ", (header, line)


# -- --request-timeout, the old --timeout, and --help ------------------------------------------------


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The request timeout each CLI invocation's context got."""
    timeouts: list[float] = []
    real = Ctx

    def record(endpoint: str, timeout: float, *args: Any) -> Any:
        timeouts.append(timeout)
        return real(endpoint, timeout, *args)

    monkeypatch.setattr(cli_module, "Ctx", record)
    return timeouts


@pytest.mark.parametrize(
    ("args", "env", "config", "expected"),
    [
        ((), {}, "", 10.0),
        (("--request-timeout", "3"), {}, "", 3.0),
        (("--timeout", "4"), {}, "", 4.0),  # the old name
        ((), {"DCRON_REQUEST_TIMEOUT": "5"}, "", 5.0),
        ((), {"DCRON_TIMEOUT": "6"}, "", 6.0),  # the old variable
        ((), {}, "request_timeout = 7", 7.0),
        ((), {}, "timeout = 8", 8.0),  # the old key
        (("--timeout", "4"), {"DCRON_REQUEST_TIMEOUT": "5"}, "", 4.0),  # a flag beats the environment
        ((), {"DCRON_TIMEOUT": "6"}, "timeout = 8", 6.0),  # the environment beats the file
    ],
)
def test_request_timeout_and_its_old_name(
    seen: list[float], tmp_path: Path, args: tuple[str, ...], env: dict[str, str], config: str, expected: float
) -> None:
    extra: list[str] = []
    if config:
        path = tmp_path / "dcron.toml"
        path.write_text(f"[client]\n{config}\n")
        extra = ["--config", str(path)]
    code, _, err = run_cli(None, *extra, *args, "next", "* * * * *", "-n", "1", env=env)
    assert code == 0, err
    assert seen == [expected]


@pytest.mark.parametrize("flag", ["--request-timeout", "--timeout"])
def test_a_bad_request_timeout_is_a_usage_error(flag: str) -> None:
    code, _, err = run_cli(None, flag, "nan", "status")
    assert code == 2 and flag in err and "internal error" not in err


def test_help_shows_the_values_in_effect() -> None:
    runner = CliRunner()
    plain = runner.invoke(cli, ["--help"], env=CLEAN_ENV, terminal_width=200)
    assert "[default: tcp://127.0.0.1:7571]" in plain.output
    assert "--request-timeout" in plain.output and "--timeout" not in plain.output  # the old name is hidden
    env = {**CLEAN_ENV, "DCRON_ENDPOINT": "tcp://10.0.0.1:7571", "DCRON_TIMEOUT": "3"}
    set_ = runner.invoke(cli, ["--help"], env=env, terminal_width=200)
    assert "[now tcp://10.0.0.1:7571, from DCRON_ENDPOINT; default: tcp://127.0.0.1:7571]" in set_.output
    assert "[now 3, from DCRON_TIMEOUT; default: 10.0]" in set_.output


def test_no_command_help_line_is_cut() -> None:
    result = CliRunner().invoke(cli, ["--help"], env=CLEAN_ENV)
    commands = result.output.split("Commands:", 1)[1].strip().splitlines()
    assert len(commands) >= 12
    assert not [line for line in commands if line.endswith("...")], commands
    assert any(line.split() == ["run", "Run", "NAME", "now,", "outside", "its", "schedule."] for line in commands)


def test_the_jobs_timeout_says_it_is_the_jobs() -> None:
    result = CliRunner().invoke(cli, ["schedule", "--help"], env=CLEAN_ENV, terminal_width=200)
    assert "--timeout" in result.output and "The job's timeout" in result.output
