"""The API, a node, the Python client and the CLI in one process, on a real embedded node.

One node (``libdcron.testing.embedded_node``: SQLite, ``file://`` objects, file-lock election,
CurveZMQ on loopback) serves the whole module.  A ``ticker`` job runs every second with a tiny sh
script, so executions and logs exist within a couple of seconds; the other jobs are scheduled
once a year and run only when asked to.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from libdcron import testing
from libdcron.cli import cli, main
from libdcron.client import Client
from libdcron.errors import ConflictError, NotFoundError, ValidationError
from libdcron.node import Node
from libdcron.plugins import Plugins
from libdcron.testing import client_for, embedded_node, wait_for

EVERY_SECOND = "*/1 * * * * *"
YEARLY = "0 0 1 1 *"
#: The CLI reads DCRON_* variables: none of the caller's may reach the commands under test.
CLEAN_ENV: dict[str, str | None] = {
    k: None for k in os.environ if k.startswith("DCRON_") and not k.startswith("DCRON_TEST_")
}
SCRIPT = 'echo "out $DCRON_JOB attempt $DCRON_ATTEMPT"\necho "err $DCRON_JOB" >&2\n'


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inprocess")


@pytest.fixture(scope="module")
def script(root: Path) -> Path:
    path = root / "job.sh"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def node(root: Path) -> Iterator[Node]:
    with embedded_node(root, node_id="inproc") as n:
        yield n


@pytest.fixture(scope="module")
def client(node: Node) -> Iterator[Client]:
    with client_for(node, timeout=5) as c:
        yield c


def finished(client: Client, name: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """The executions of ``name`` once ``count`` of them have ended with their log uploaded.

    Not a plain predicate: it waits for a number of runs (built on ``wait_for``).
    """

    def done() -> list[dict[str, Any]] | None:
        rows = [e for e in client.executions(name, limit=100) if e["status"] != "running" and e["log"]]
        return rows if len(rows) >= count else None

    return wait_for(done, timeout, message=f"{count} finished executions of {name}")


@pytest.fixture(scope="module")
def ticker(client: Client, script: Path) -> list[dict[str, Any]]:
    """A job that ran every second until it had three finished runs, then was disabled."""
    reply = client.schedule("ticker", EVERY_SECOND, "sh", script)
    assert reply["created"] is True and len(reply["next"]) == 1
    finished(client, "ticker", 3)
    client.disable("ticker")
    # A run already sent ahead when the job was disabled still runs: let its fire time pass, and
    # the run end, so that the executions no longer change.
    time.sleep(1.2)
    wait_for(lambda: all(e["status"] != "running" for e in client.executions("ticker", limit=100)), 10)
    return finished(client, "ticker", 3)


# ---------------------------------------------------------------------------------------------
# The Python client
# ---------------------------------------------------------------------------------------------


def test_status(client: Client, node: Node) -> None:
    status = client.status()
    assert status["node"] == "inproc" and status["endpoint"] == node.endpoint
    assert status["is_leader"] is True and status["leader"]["node_id"] == "inproc"
    assert [m["node_id"] for m in status["members"]] == ["inproc"]
    assert status["capacity"] == 4 and status["outbox"] == 0
    assert status["store"].startswith("sqlite://") and status["objects"].startswith("file://")


def test_schedule_from_a_local_file_runs_and_logs(client: Client, ticker: list[dict[str, Any]]) -> None:
    job = client.show("ticker")["job"]
    assert job["script"].startswith("file://") and "/scripts/ticker/" in job["script"]
    assert job["script_sha256"] and job["script"].endswith(".sh")
    newest = ticker[0]
    assert newest["status"] == "succeeded" and newest["exit_code"] == 0 and newest["node"] == "inproc"
    log = client.logs(newest["id"]).decode()
    assert "out ticker attempt 1" in log and "err ticker" in log  # stdout and stderr, interleaved


def test_schedule_from_an_object_key(client: Client, node: Node) -> None:
    url = node.objects.url_for("jobs/keyed.sh")
    node.objects.put_bytes(b"echo keyed\n", url)
    reply = client.schedule("keyed", YEARLY, "sh", "jobs/keyed.sh")
    assert reply["created"] is True and reply["job"]["script"] == url
    assert reply["job"]["script_sha256"] is None
    by_url = client.schedule("keyed-url", YEARLY, "sh", url)
    assert by_url["job"]["script"] == url
    with pytest.raises(NotFoundError, match="not found in object storage"):
        client.schedule("missing", YEARLY, "sh", "jobs/missing.sh")


def test_an_empty_time_zone_is_refused_at_registration_as_by_next(client: Client, script: Path) -> None:
    from libdcron.schedule import parse_schedule

    with pytest.raises(ValidationError, match="time zone is empty") as registered:
        client.schedule("nozone", YEARLY, "sh", script, tz="")
    with pytest.raises(ValidationError, match="time zone is empty") as parsed:
        parse_schedule(YEARLY, "")  # what `dcron next --tz ''` does
    assert str(registered.value) == str(parsed.value)


def test_update_conflict_and_update(client: Client, script: Path) -> None:
    first = client.schedule("updated", YEARLY, "sh", script)
    assert first["created"] is True and first["job"]["version"] == 1
    with pytest.raises(ConflictError, match="already exists; pass update=True"):
        client.schedule("updated", "0 12 * * *", "sh", script)
    second = client.schedule("updated", "0 12 * * *", "sh", script, update=True, timeout=30, tz="Europe/Paris")
    assert second["created"] is False
    job = second["job"]
    assert (job["schedule"], job["timeout"], job["tz"], job["version"]) == ("0 12 * * *", 30, "Europe/Paris", 2)
    assert job["created"] == first["job"]["created"]


def test_invalid_jobs_are_refused(client: Client, script: Path) -> None:
    with pytest.raises(ValidationError, match=r"field 2 \(hour\)"):
        client.schedule("bad", "* 25 * * *", "sh", script)
    with pytest.raises(ValidationError, match="unknown interpreter 'cobol'"):
        client.schedule("bad", YEARLY, "cobol", script)
    with pytest.raises(NotFoundError):
        client.show("bad")


def test_enable_disable_and_list(client: Client, script: Path) -> None:
    client.schedule("toggled", YEARLY, "sh", script)
    assert client.disable("toggled")["changed"] is True
    assert client.disable("toggled")["changed"] is False
    jobs = {j["name"]: j for j in client.list()}
    assert jobs["toggled"]["enabled"] is False and jobs["toggled"]["next"] is None
    assert client.show("toggled")["next"] == []
    assert client.enable("toggled")["changed"] is True
    assert client.enable("toggled")["changed"] is False
    jobs = {j["name"]: j for j in client.list()}
    assert jobs["toggled"]["enabled"] is True and jobs["toggled"]["next"].startswith(f"{_next_year()}-01-01")
    with pytest.raises(NotFoundError):
        client.enable("nobody")


def test_show(client: Client, script: Path) -> None:
    client.schedule("shown", YEARLY, "sh", script, max_attempts=5)
    reply = client.show("shown", count=4)
    assert reply["job"]["name"] == "shown" and reply["job"]["max_attempts"] == 5
    assert len(reply["next"]) == 4 and reply["next"] == sorted(reply["next"])
    assert reply["last"] is None


def test_show_has_the_latest_execution(client: Client, ticker: list[dict[str, Any]]) -> None:
    assert client.show("ticker")["last"]["id"] == client.executions("ticker", limit=1)[0]["id"]


def test_executions_paging(client: Client, ticker: list[dict[str, Any]]) -> None:
    every = client.executions("ticker", limit=100)
    assert len(every) >= 3
    assert [e["fire_time"] for e in every] == sorted((e["fire_time"] for e in every), reverse=True)
    pages = client.executions("ticker", limit=2, page=1) + client.executions("ticker", limit=2, page=2)
    assert [e["id"] for e in pages] == [e["id"] for e in every[:4]]
    assert client.executions("ticker", limit=2, page=1000) == []
    with pytest.raises(ValidationError):
        client.executions("ticker", limit=0)


def test_logs_of_an_unknown_execution(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.logs("ticker@2000-01-01T00:00:00Z#1")


def yearly_sh(client: Client, tmp_path: Path, name: str, text: str) -> None:
    """Register ``name``: the ``sh`` script ``text``, due once a year (it runs when asked to)."""
    path = tmp_path / f"{name}.sh"
    path.write_text(text)
    client.schedule(name, YEARLY, "sh", path)


def test_run_now(client: Client, tmp_path: Path) -> None:
    yearly_sh(client, tmp_path, "now", 'echo "now $DCRON_EXECUTION_ID"\n')
    reply = client.run("now")
    assert reply["queued"] is False
    execution = reply["execution"]
    done = finished(client, "now", 1)
    assert [e["id"] for e in done] == [execution] and done[0]["status"] == "succeeded"
    assert client.logs(execution).decode() == f"now {execution}\n"
    with pytest.raises(NotFoundError):
        client.run("nobody")


def test_a_run_asked_for_while_one_goes_on_waits_and_is_named_in_the_reply(client: Client, tmp_path: Path) -> None:
    yearly_sh(client, tmp_path, "busy", 'sleep 1.5\necho "busy $DCRON_EXECUTION_ID"\n')
    first = client.run("busy")
    assert first["queued"] is False
    wait_for(lambda: client.execution(first["execution"]), 5, message="the first run started")
    second = client.run("busy")
    assert second["queued"] is True and second["execution"] != first["execution"]
    assert client.run("busy") == second, "asked again while it waits: the same run"
    done = client.wait_execution(second["execution"], timeout=20)
    assert done["status"] == "succeeded" and done["manual"] is True
    assert client.logs(second["execution"]).decode() == f"busy {second['execution']}\n"
    assert client.execution(first["execution"])["status"] == "succeeded"
    assert [e["id"] for e in finished(client, "busy", 2)] == [second["execution"], first["execution"]]


def _next_year() -> int:
    from libdcron.model import utcnow

    return utcnow().year + 1


# ---------------------------------------------------------------------------------------------
# The CLI, through click's CliRunner
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dcron(node: Node) -> Any:
    """Run ``dcron ARGS`` against the node; return the click Result (exit code checked by callers)."""
    runner = CliRunner()
    base = ["--endpoint", node.endpoint, "--data-dir", str(node.settings.data_dir)]

    def invoke(*args: str) -> Any:
        return runner.invoke(cli, [*base, *args], env=CLEAN_ENV, catch_exceptions=False)

    return invoke


def test_cli_schedule_list_show(dcron: Any, script: Path) -> None:
    result = dcron("schedule", "cli-job", "--cron", YEARLY, "--interpreter", "sh", "--script", str(script))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("registered cli-job; next run ")

    listed = dcron("list")
    assert listed.exit_code == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "STATE", "SCHEDULE", "TZ", "NEXT"]
    row = next(r for r in rows if r.startswith("cli-job "))
    assert "enabled" in row and YEARLY in row and "UTC" in row

    shown = dcron("show", "cli-job", "--count", "2")
    assert shown.exit_code == 0
    lines = dict(line.split(": ", 1) for line in shown.stdout.splitlines())
    assert lines["name"] == "cli-job" and lines["interpreter"] == "sh" and lines["last"] == "-"
    assert len(lines["next"].split(", ")) == 2

    again = dcron("schedule", "cli-job", "-c", "0 6 * * *", "-i", "sh", "-s", str(script), "--update", "--json")
    assert again.exit_code == 0
    reply = json.loads(again.stdout)
    assert reply["created"] is False and reply["job"]["schedule"] == "0 6 * * *"


def test_cli_disable_enable(dcron: Any, script: Path) -> None:
    assert dcron("schedule", "cli-toggle", "-c", YEARLY, "-i", "sh", "-s", str(script)).exit_code == 0
    assert dcron("disable", "cli-toggle").stdout == "disabled cli-toggle\n"
    assert dcron("disable", "cli-toggle").stdout == "cli-toggle was already disabled\n"
    assert dcron("enable", "cli-toggle").stdout == "enabled cli-toggle\n"


def test_cli_json(dcron: Any, ticker: list[dict[str, Any]]) -> None:
    jobs = json.loads(dcron("list", "--json").stdout)["jobs"]
    assert "ticker" in {j["name"] for j in jobs}
    shown = json.loads(dcron("--json", "show", "ticker").stdout)  # --json before the command too
    assert shown["job"]["name"] == "ticker" and shown["last"] is not None
    page = json.loads(dcron("executions", "ticker", "--limit", "2", "--page", "2", "--json").stdout)
    assert page["page"] == 2 and page["limit"] == 2 and len(page["executions"]) <= 2
    log = json.loads(dcron("logs", ticker[0]["id"], "--json").stdout)
    assert log["execution"] == ticker[0]["id"] and "out ticker" in log["log"]
    status = json.loads(dcron("status", "--json").stdout)
    assert status["is_leader"] is True and status["node"] == "inproc"


def test_cli_executions_and_logs(dcron: Any, ticker: list[dict[str, Any]]) -> None:
    result = dcron("executions", "ticker", "--limit", "3")
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["FIRE", "TIME", "ATT"]
    assert ticker[0]["fire_time"] in result.stdout and "succeeded" in result.stdout
    assert 1 <= len(rows) <= 3

    logs = dcron("logs", ticker[0]["id"])
    assert logs.exit_code == 0
    assert "out ticker attempt 1\n" in logs.stdout and "err ticker\n" in logs.stdout


def test_cli_status(dcron: Any, node: Node) -> None:
    result = dcron("status")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"node: inproc ({node.endpoint})",
        "leader: inproc",
        "members: inproc",
        f"running here: {len(node.worker.running())} of 4",
    ]


def test_cli_run(dcron: Any, client: Client, script: Path) -> None:
    assert dcron("schedule", "cli-run", "-c", YEARLY, "-i", "sh", "-s", str(script)).exit_code == 0
    result = dcron("run", "cli-run")
    assert result.exit_code == 0 and result.stdout.startswith("started cli-run@")
    finished(client, "cli-run", 1)


def cli_main(node: Node, *args: str) -> tuple[int, str, str]:
    """``dcron ARGS`` through :func:`libdcron.cli.main`, which turns errors into one line and exit 1."""
    runner = CliRunner()
    base = ["--endpoint", node.endpoint, "--data-dir", str(node.settings.data_dir)]
    with runner.isolation(env=CLEAN_ENV) as (out, err, _):
        try:
            main([*base, *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nobody"), "error: no job named 'nobody'"),
        (("schedule", "bad", "-c", "* 25 * * *", "-i", "sh", "-s", "jobs/x.sh"), "error: invalid cron"),
        (("logs", "nobody@2000-01-01T00:00:00Z#1"), "error: no execution "),
        (("--endpoint", "tcp://127.0.0.1:1", "--timeout", "0.3", "status"), "error: "),
    ],
)
def test_cli_errors_exit_1_with_one_line(node: Node, args: tuple[str, ...], message: str) -> None:
    code, out, err = cli_main(node, *args)
    assert code == 1 and out == ""
    assert err.startswith(message) and err.endswith("\n") and err.count("\n") == 1, err


def test_cli_error_from_the_runner() -> None:
    """Invoked as a click command (no ``main``), an error is the exception and exit code 1."""
    runner = CliRunner()
    result = runner.invoke(
        cli, ["--endpoint", "tcp://127.0.0.1:1", "--data-dir", "/nonexistent", "status"], env=CLEAN_ENV
    )
    assert result.exit_code == 1 and isinstance(result.exception, ValidationError)
    assert "no client key" in str(result.exception)


def test_cli_usage_error_exits_2(node: Node) -> None:
    code, _, err = cli_main(node, "schedule", "x")
    assert code == 2 and "Missing option" in err


def test_cli_keygen(tmp_path: Path) -> None:
    runner = CliRunner(env=CLEAN_ENV)
    result = runner.invoke(cli, ["keygen", "alice", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    public, secret = tmp_path / "alice.key", tmp_path / "alice.key_secret"
    assert public.exists() and secret.stat().st_mode & 0o777 == 0o600
    assert result.stdout.startswith(f"wrote {tmp_path / 'alice'}.key (public: ")

    again = runner.invoke(cli, ["keygen", "alice", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "pass --force" in str(again.exception)

    forced = runner.invoke(cli, ["keygen", "alice", "--dir", str(tmp_path), "--force", "--json"])
    assert forced.exit_code == 0
    reply = json.loads(forced.stdout)
    assert reply["public"] == str(public) and reply["secret"] == str(secret)
    assert reply["public_key"] in public.read_text()


# ---------------------------------------------------------------------------------------------
# A node on the in-memory document store
# ---------------------------------------------------------------------------------------------


def test_a_node_on_the_in_memory_store(tmp_path: Path) -> None:
    """``libdcron.testing`` as a plugin: a real node keeps its jobs and executions in memory."""
    path = tmp_path / "hi.sh"
    path.write_text("echo hi from memory\n")
    plugins = Plugins(extra=[testing])
    with embedded_node(tmp_path, store="memory://inprocess", plugins=plugins) as node, client_for(node) as c:
        assert isinstance(node.store, testing.InMemoryDocumentStore)
        assert c.status()["store"] == "memory://inprocess"
        c.schedule("hi", EVERY_SECOND, "sh", path)
        done = finished(c, "hi", 1)
        assert done[0]["status"] == "succeeded"
        assert c.logs(done[0]["id"]) == b"hi from memory\n"
        assert not (tmp_path / "data" / "dcron.sqlite3").exists()
