"""One real ``dcrond`` on embedded defaults, driven by the real ``dcron`` CLI."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
import zmq

from libdcron.model import parse_instant

from .harness import Cluster, wait_for

PY = 'import os\nprint("py", os.environ["DCRON_JOB"], os.environ["DCRON_FIRE_TIME"])\n'
RB = 'puts "rb #{ENV["DCRON_JOB"]} #{RUBY_VERSION}"\n$stderr.puts "rb-stderr"\n'
SH = 'echo "sh $DCRON_JOB attempt $DCRON_ATTEMPT"\necho "sh-stderr" >&2\nexit 0\n'


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def executions(cluster: Cluster, name: str, limit: int = 100) -> list[dict]:  # type: ignore[type-arg]
    return list(cluster.json("executions", name, "--limit", str(limit))["executions"])


def done(cluster: Cluster, name: str, n: int) -> list[dict]:  # type: ignore[type-arg]
    def enough() -> list[dict] | None:  # type: ignore[type-arg]
        rows = [e for e in executions(cluster, name) if e["status"] != "running"]
        return rows if len(rows) >= n else None

    return wait_for(enough, 30)  # type: ignore[no-any-return]


def test_python_ruby_and_sh_jobs_run_and_their_logs_are_kept(cluster: Cluster, tmp_path: Path) -> None:
    if shutil.which("ruby") is None and os.environ.get("CI"):
        pytest.fail("ruby is not installed (scripts/install-services.sh installs it)")
    cluster.add("solo")
    cluster.wait_ready()
    cluster.dcron(
        "schedule", "py", "--cron", "*/2 * * * * *", "-i", "python", "-s", write(tmp_path, "a.py", PY)
    )
    cluster.dcron("schedule", "sh", "--cron", "*/2 * * * * *", "-i", "sh", "-s", write(tmp_path, "a.sh", SH))
    if shutil.which("ruby"):
        cluster.dcron(
            "schedule", "rb", "--cron", "*/2 * * * * *", "-i", "ruby", "-s", write(tmp_path, "a.rb", RB)
        )
    for name in ("py", "sh", *(["rb"] if shutil.which("ruby") else [])):
        rows = done(cluster, name, 2)
        for row in rows:
            assert row["status"] == "succeeded", row
            assert row["exit_code"] == 0
            assert row["node"] == "solo"
            assert row["attempt"] == 1
            fire = parse_instant(row["fire_time"])
            assert fire.second % 2 == 0 and fire.microsecond == 0
            # The process starts on time: the leader sends the run ahead of the fire instant.
            assert 0 <= (parse_instant(row["started"]) - fire).total_seconds() < 1.0
        fires = [r["fire_time"] for r in rows]
        assert fires == sorted(fires, reverse=True), "executions are newest first"
        log = cluster.dcron("logs", rows[-1]["id"]).stdout
        if name == "py":
            assert log.strip() == f"py py {rows[-1]['fire_time']}"
        elif name == "sh":
            assert "sh sh attempt 1" in log and "sh-stderr" in log
        else:
            assert "rb rb " in log and "rb-stderr" in log


def test_failure_timeout_and_process_group_kill(cluster: Cluster, tmp_path: Path) -> None:
    cluster.add("solo")
    cluster.wait_ready()
    cluster.dcron(
        "schedule", "fails", "-c", "0 0 1 1 *", "-i", "sh", "-s", write(tmp_path, "f.sh", "echo no; exit 3\n")
    )
    pidfile = tmp_path / "child.pid"
    slow = f"sleep 300 &\necho $! > {pidfile}\nwait\n"
    cluster.dcron(
        "schedule",
        "slow",
        "-c",
        "0 0 1 1 *",
        "-i",
        "sh",
        "-s",
        write(tmp_path, "s.sh", slow),
        "--timeout",
        "1",
        "--max-attempts",
        "2",
    )
    cluster.dcron("run", "fails")
    cluster.dcron("run", "slow")
    row = done(cluster, "fails", 1)[0]
    assert row["status"] == "failed" and row["exit_code"] == 3
    rows = done(cluster, "slow", 2)
    assert [r["status"] for r in rows] == ["timeout", "timeout"]
    assert [r["attempt"] for r in rows] == [2, 1]
    assert rows[0]["fire_time"] == rows[1]["fire_time"]
    assert "timeout of 1s" in rows[0]["reason"]
    # The whole process group was killed, the backgrounded child too.
    child = int(pidfile.read_text())
    wait_for(lambda: not Path(f"/proc/{child}").exists(), 5)
    time.sleep(2)
    assert len(executions(cluster, "slow")) == 2, "max_attempts=2 stops the retries"


def test_no_overlap_between_runs_of_one_job(cluster: Cluster, tmp_path: Path) -> None:
    cluster.add("solo")
    cluster.wait_ready()
    cluster.dcron(
        "schedule", "long", "-c", "* * * * * *", "-i", "sh", "-s", write(tmp_path, "l.sh", "sleep 2.5\n")
    )
    rows = done(cluster, "long", 3)
    spans = sorted(
        (parse_instant(r["started"]), parse_instant(r["ended"])) for r in rows if r["status"] != "running"
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"runs overlap: {spans}"
    # Fire times that passed during a run collapse into one run right after it.
    gaps = [(b[0] - a[1]).total_seconds() for a, b in itertools.pairwise(spans)]
    assert all(g < 1.0 for g in gaps), gaps


def test_log_size_cap_adds_a_marker(cluster: Cluster, tmp_path: Path) -> None:
    cluster.add("solo", "--log-cap", "1000")
    cluster.wait_ready()
    script = "import sys\nsys.stdout.write('x' * 5000)\n"
    cluster.dcron(
        "schedule", "chatty", "-c", "0 0 1 1 *", "-i", "python", "-s", write(tmp_path, "c.py", script)
    )
    cluster.dcron("run", "chatty")
    row = done(cluster, "chatty", 1)[0]
    log = cluster.dcron("logs", row["id"]).stdout
    assert log.startswith("x" * 1000)
    assert "[dcron: log truncated at 1000 bytes; 4000 more bytes discarded]" in log
    assert log.count("x") == 1000


def test_lookback_after_downtime_runs_only_the_newest_missed_fire_time(
    cluster: Cluster, tmp_path: Path
) -> None:
    node = cluster.add("solo")
    cluster.wait_ready()
    cluster.dcron(
        "schedule", "tick", "-c", "*/3 * * * * *", "-i", "sh", "-s", write(tmp_path, "t.sh", "true\n")
    )
    done(cluster, "tick", 1)
    assert node.terminate() == 0
    stopped = time.time()
    time.sleep(7.5)  # two or three fire times pass while the node is down
    cluster.nodes.clear()
    cluster.add("solo")
    cluster.wait_ready()
    time.sleep(1.0)
    after = sorted(
        (r for r in executions(cluster, "tick") if parse_instant(r["fire_time"]).timestamp() > stopped),
        key=lambda r: r["fire_time"],
    )
    catch_up = parse_instant(after[0]["fire_time"]).timestamp()
    # Fire times missed before the newest one were skipped (at least two fell in the downtime) ...
    skipped = [t for t in range(int(stopped) + 1, int(catch_up)) if t % 3 == 0]
    assert len(skipped) >= 1, (stopped, catch_up)
    # ... and the newest one ran exactly once.
    assert [r["fire_time"] for r in after].count(after[0]["fire_time"]) == 1
    log = cluster.nodes[0].log()
    assert f"lookback: tick missed {after[0]['fire_time']}, running it now" in log


def test_bad_input_gets_one_line_errors(cluster: Cluster, tmp_path: Path) -> None:
    cluster.add("solo")
    cluster.wait_ready()
    script = write(tmp_path, "ok.sh", "true\n")
    cases = [
        (["schedule", "a", "-c", "* 25 * * *", "-i", "sh", "-s", script], "field 2 (hour)"),
        (["schedule", "a", "-c", "* * *", "-i", "sh", "-s", script], "expected 5 fields"),
        (["schedule", "a", "-c", "* * * * *", "-i", "cobol", "-s", script], "unknown interpreter 'cobol'"),
        (["schedule", "a", "-c", "* * * * *", "-i", "sh", "-s", "scripts/nope.sh"], "not found"),
        (["schedule", "a" * 101, "-c", "* * * * *", "-i", "sh", "-s", script], "at most 100"),
        (["schedule", "", "-c", "* * * * *", "-i", "sh", "-s", script], "non-empty"),
        (["schedule", "a", "-c", "* * * * *", "-i", "sh", "-s", script, "--tz", "Mars/Base"], "time zone"),
        (["show", "ghost"], "no job named 'ghost'"),
        (["logs", "ghost@2026-01-01T00:00:00Z#1"], "no execution"),
    ]
    for args, message in cases:
        result = cluster.dcron(*args, check=False)
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    cluster.dcron("schedule", "a", "-c", "* * * * *", "-i", "sh", "-s", script)
    taken = cluster.dcron("schedule", "a", "-c", "* * * * *", "-i", "sh", "-s", script, check=False)
    assert taken.returncode == 1 and "already exists" in taken.stderr
    updated = cluster.json("schedule", "a", "-c", "*/5 * * * *", "-i", "sh", "-s", script, "--update")
    assert updated["created"] is False and updated["job"]["version"] == 2
    assert cluster.json("show", "a")["job"]["schedule"] == "*/5 * * * *"


def _curve_dealer(ctx: zmq.Context[zmq.Socket[bytes]], cluster: Cluster, endpoint: str) -> zmq.Socket[bytes]:
    """A DEALER holding the cluster's client key (an authenticated peer sending what it likes)."""
    import zmq.auth

    client_public, client_secret = zmq.auth.load_certificate(cluster.keys_dir / "client.key_secret")
    server_public, _ = zmq.auth.load_certificate(cluster.keys_dir / "cluster.key")
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_serverkey = server_public
    sock.curve_publickey = client_public
    sock.curve_secretkey = client_secret or b""
    sock.connect(endpoint)
    return sock


def test_garbage_and_oversized_frames_do_not_stop_the_node(cluster: Cluster) -> None:
    node = cluster.add("solo")
    cluster.wait_ready()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        # A peer without keys gets nothing at all.
        stranger = ctx.socket(zmq.DEALER)
        stranger.setsockopt(zmq.LINGER, 0)
        stranger.connect(node.endpoint)
        stranger.send_multipart([b"", b"DCRON/1", b"\x01", b"{}"])
        assert not stranger.poll(1500), "an unauthenticated peer got a reply"
        stranger.close()
        # An authenticated peer sending garbage gets an error reply to each message.
        for frames in (
            [b"", b"garbage"],
            [b"", b"DCRON/1", b"\x10", b"{not json"],
            [b"", b"DCRON/1", b"\x10", b"[]"],
            [b"", b"DCRON/1", b"\xff", b"{}"],
            [b"", b"DCRON/1", b"\x10", b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}"],
            [b"", os.urandom(32)],
        ):
            sock = _curve_dealer(ctx, cluster, node.endpoint)
            sock.send_multipart(frames)
            assert sock.poll(5000), f"no error reply to {frames[:2]!r}"
            reply = sock.recv_multipart()
            assert reply[2] == b"\x01" and b"error" in reply[3]
            sock.close()
        big = _curve_dealer(ctx, cluster, node.endpoint)
        big.send_multipart([b"", b"DCRON/1", b"\x10", b"x" * (20 * 1024 * 1024)])
        time.sleep(1)
        big.close()
    finally:
        ctx.destroy(linger=0)
    host, port = node.endpoint.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(os.urandom(10000))
    time.sleep(0.3)
    assert node.alive()
    assert cluster.json("status")["node"] == "solo"
    wait_for(lambda: "rejected a message from client" in node.log(), 10)
    wait_for(lambda: "failed the CurveZMQ handshake" in node.log(), 10)


def test_sigterm_stops_cleanly_with_pidfile(cluster: Cluster, tmp_path: Path) -> None:
    pidfile = tmp_path / "dcrond.pid"
    node = cluster.add("solo", "--pidfile", str(pidfile))
    cluster.wait_ready()
    assert node.proc is not None and int(pidfile.read_text()) == node.proc.pid
    assert node.terminate() == 0
    assert not pidfile.exists()
    log = node.log()
    assert "listening on" in log and "data in" in log and "dcrond stopped" in log


def test_config_file_environment_and_flags(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.add("solo")
    cluster.wait_ready()
    script = write(tmp_path, "e.sh", "true\n")
    config = tmp_path / "dcron.toml"
    config.write_text(f'[client]\nendpoint = "{node.endpoint}"\n')
    # The config file alone says where the node is.
    result = cluster.dcron("--config", str(config), "list", "--json", endpoint="")
    assert json.loads(result.stdout) == {"jobs": [], "next": None}
    assert (
        cluster.dcron("list", "--json", endpoint="", extra_env={"DCRON_CONFIG": str(config)}).returncode == 0
    )
    # The environment beats the file, and a flag beats the environment.
    bad = cluster.dcron(
        "--config", str(config), "--timeout", "0.5", "list", check=False, endpoint="tcp://127.0.0.1:1"
    )
    assert bad.returncode == 1 and "did not answer" in bad.stderr
    ok = cluster.dcron("--endpoint", node.endpoint, "list", endpoint="tcp://127.0.0.1:1")
    assert ok.returncode == 0
    # Subcommand options read DCRON_<COMMAND>_<OPTION>.
    env = {"DCRON_SCHEDULE_TZ": "Europe/Paris", "DCRON_SCHEDULE_INTERPRETER": "sh"}
    cluster.dcron("schedule", "paris", "-c", "0 9 * * *", "-s", script, extra_env=env)
    shown = cluster.json("show", "paris")
    assert shown["job"]["tz"] == "Europe/Paris" and shown["job"]["interpreter"] == "sh"
    assert all(n.endswith(("T08:00:00Z", "T07:00:00Z")) for n in shown["next"])


def test_a_run_killed_with_its_node_is_marked_lost_when_the_node_restarts(
    cluster: Cluster, tmp_path: Path
) -> None:
    node = cluster.add("solo")
    cluster.wait_ready()
    cluster.dcron(
        "schedule", "nap", "-c", "0 0 1 1 *", "-i", "sh", "-s", write(tmp_path, "n.sh", "sleep 60\n")
    )
    cluster.dcron("run", "nap")
    wait_for(lambda: executions(cluster, "nap") and executions(cluster, "nap")[0]["status"] == "running", 10)
    node.kill()
    cluster.nodes.clear()
    cluster.add("solo")
    cluster.wait_ready()
    row = wait_for(lambda: next((r for r in executions(cluster, "nap") if r["status"] == "lost"), None), 10)
    assert "restarted mid-run" in row["reason"]
    # ... and retried as the next attempt of the same fire time.
    retry = wait_for(lambda: next((r for r in executions(cluster, "nap") if r["attempt"] == 2), None), 15)
    assert retry["fire_time"] == row["fire_time"]


def test_sigterm_gives_runs_the_stop_grace_then_they_are_lost_and_retried_after_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    node = cluster.add("solo", "--stop-grace", "1")
    cluster.wait_ready()
    cluster.dcron(
        "schedule", "long", "-c", "0 0 1 1 *", "-i", "sh", "-s", write(tmp_path, "l.sh", "sleep 60\n")
    )
    cluster.dcron("run", "long")
    wait_for(lambda: executions(cluster, "long") and executions(cluster, "long")[0]["status"] == "running", 10)
    started = time.monotonic()
    assert node.terminate() == 0
    assert time.monotonic() - started < 10, "the grace is 1 s, then the run is killed"
    # The node was its own leader and stopped first: the restarted node retries the attempt.
    cluster.nodes.clear()
    cluster.add("solo")
    cluster.wait_ready()
    retry = wait_for(lambda: next((r for r in executions(cluster, "long") if r["attempt"] == 2), None), 15)
    row = next(r for r in executions(cluster, "long") if r["attempt"] == 1)
    assert row["status"] == "lost" and "shut down mid-run" in row["reason"], row
    assert retry["fire_time"] == row["fire_time"]


def test_exit_codes_for_bad_configuration_and_a_taken_address(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.add("first")
    cluster.wait_ready()
    taken = cluster.add("second", "--data-dir", str(tmp_path / "other"), "--listen", node.endpoint)
    assert taken.proc is not None and taken.proc.wait(30) == 3
    assert "cannot listen" in taken.log()
    config = tmp_path / "bad.toml"
    config.write_text('[node]\ncapacity = "4"\n')
    for i, (args, message) in enumerate(
        (
            (["--store", "mongodb://x"], "no document-store plugin handles 'mongodb://x'"),
            (["--listen", "bogus"], "listen must be a ZeroMQ endpoint"),
            (["--config", str(config)], "setting capacity must be an integer, got '4'"),
            (
                ["-o", "couchdb_timeout=abc", "--store", "http://127.0.0.1:5984/x"],
                "option couchdb_timeout must be a number, got 'abc'",
            ),
            (
                ["-o", "election_poll_interval=abc"],
                "option election_poll_interval must be a number, got 'abc'",
            ),
            (
                ["-o", "session_timeout=abc", "--election", "zk://127.0.0.1:2181/dcron"],
                "option session_timeout must be a number, got 'abc'",
            ),
        )
    ):
        bad = cluster.add(f"bad{i}", "--data-dir", str(tmp_path / "bad"), *args)
        assert bad.proc is not None and bad.proc.wait(30) == 1, (args, bad.log())
        # stdout and stderr both go to the log: one line, and no traceback.
        out = bad.log()
        assert message in out and "bad configuration" in out, (args, out)
        assert out.count("\n") == 1 and "Traceback" not in out, (args, out)
        cluster.nodes.remove(bad)
    # The client's --timeout: a usage error (exit 2), not an internal error.
    for timeout in ("nan", "inf", "0", "-1", "soon"):
        result = cluster.dcron("--timeout", timeout, "status", check=False)
        assert result.returncode == 2, (timeout, result.stderr)
        assert "--timeout" in result.stderr and "Traceback" not in result.stderr, (timeout, result.stderr)
        assert "internal error" not in result.stderr


def test_embedded_default_keys_are_created_and_found_by_the_cli(tmp_path: Path) -> None:
    """No key setting anywhere: dcrond makes its keys in the data folder and dcron finds them."""
    cluster = Cluster(tmp_path, shared_keys=False)
    try:
        cluster.add("solo")
        cluster.wait_ready()
        keys = cluster.data_dir / "keys"
        assert (keys / "cluster.key_secret").stat().st_mode & 0o777 == 0o600
        assert (keys / "client.key_secret").stat().st_mode & 0o777 == 0o600
        assert cluster.json("status")["node"] == "solo"
        # Without the data folder the CLI has no key, and says what to do.
        result = cluster.dcron("status", check=False, extra_env={"DCRON_DATA_DIR": str(tmp_path / "elsewhere")})
        assert result.returncode == 1 and "no client key" in result.stderr and "Traceback" not in result.stderr
        # A stranger's key is refused at once, not after the time-out.
        cluster.dcron("keygen", "stranger", "--dir", str(tmp_path))
        result = cluster.dcron(
            "status",
            check=False,
            extra_env={"DCRON_KEY": str(tmp_path / "stranger.key_secret")},
        )
        assert result.returncode == 1 and "refused this client's key" in result.stderr
    finally:
        cluster.stop()
