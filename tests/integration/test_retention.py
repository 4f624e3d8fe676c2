"""Retention on the real stores: SQLite and CouchDB (pouchdb-server) documents with ``file://``
logs, and through a real embedded node registered with the CLI.

``couchdb`` needs ``DCRON_TEST_COUCHDB`` (``bash scripts/services.sh start``).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dcron_plugins.store_couchdb as couchdb_module
import dcron_plugins.store_sqlite as sqlite_module
import pytest
import requests
from click.testing import CliRunner
from dcron_plugins.storage_local import LocalObjectStore

from libdcron.abc import EXECUTIONS, JOBS, DocumentStore
from libdcron.cli import cli
from libdcron.errors import ValidationError
from libdcron.model import Execution, Job, Status, log_key
from libdcron.records import Records
from libdcron.retention import Policy, Retention
from libdcron.testing import client_for, embedded_node, wait_for
from tests.conftest import service

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CLEAN_ENV: dict[str, str | None] = {
    k: None for k in os.environ if k.startswith("DCRON_") and not k.startswith("DCRON_TEST_")
}


@pytest.fixture(params=["sqlite", pytest.param("couchdb", marks=pytest.mark.couchdb)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DocumentStore]:
    if request.param == "sqlite":
        made = sqlite_module.dcron_document_store(f"sqlite://{tmp_path}/dcron.db", {})
        cleanup = None
    else:
        base = service("COUCHDB", "CouchDB-API server (pouchdb-server)").rstrip("/")
        prefix = "r" + uuid.uuid4().hex[:12]
        made = couchdb_module.dcron_document_store(f"{base}/{prefix}", {})
        cleanup = [f"{base}/{prefix}_{c}" for c in (JOBS, EXECUTIONS)]
    assert made is not None
    made.open()
    yield made
    made.close()
    for url in cleanup or []:
        with contextlib.suppress(requests.RequestException):
            requests.delete(url, timeout=5)


def test_sweep_on_a_real_store_with_file_logs(store: DocumentStore, tmp_path: Path) -> None:
    objects = LocalObjectStore(f"file://{tmp_path}/objects")
    records = Records(store)

    def resolve(url: str) -> LocalObjectStore:
        if not url.startswith(objects.base_url + "/"):
            raise ValidationError(f"{url} is outside")
        return objects

    def run(job: str, ago: timedelta, attempt: int = 1, status: Status = Status.SUCCEEDED) -> Execution:
        fire = NOW - ago
        url = objects.url_for(log_key(job, fire, attempt))
        objects.put_bytes(f"log of {job} {attempt}".encode(), url)
        ex = Execution(job, fire, attempt, "n1", status, log=None if status is Status.RUNNING else url)
        records.create_execution(ex)
        return ex

    for name, keep_runs, keep_days in (("counted", 3, None), ("aged", None, 2), ("default", None, None)):
        script = objects.url_for(f"scripts/{name}.sh")
        records.create_job(Job(name, "* * * * *", "sh", script, keep_runs=keep_runs, keep_days=keep_days))
    counted = [run("counted", timedelta(minutes=m)) for m in range(1, 9)]
    counted.insert(1, run("counted", timedelta(minutes=2), 2))  # a retried fire time, kept whole
    running = run("counted", timedelta(days=3), status=Status.RUNNING)
    aged = [run("aged", timedelta(days=d, minutes=1)) for d in range(6)]
    default = [run("default", timedelta(minutes=m)) for m in range(1, 6)]

    retention = Retention(store, resolve, Policy(keep_runs=4, keep_days=0), page=3, rate=None, clock=lambda: NOW)
    report = retention.sweep_once()

    def left(job: str) -> set[str]:
        return {ex.id for ex in records.executions(job, limit=100)}

    kept_counted = [counted[0], counted[1], counted[2], counted[3], running]
    assert left("counted") == {ex.id for ex in kept_counted}
    assert left("aged") == {ex.id for ex in aged[:2]}
    assert left("default") == {ex.id for ex in default[:4]}
    assert report.complete and report.executions == 5 + 4 + 1 and report.logs == 10
    for ex in counted + aged + default:
        kept = ex.id in left(ex.job)
        assert objects.exists(str(ex.log)) is kept, ex.id
        if kept:
            assert records.execution(ex.id).log == ex.log  # kept documents are intact
    assert objects.exists(objects.url_for(log_key("counted", running.fire_time, 1)))
    assert retention.sweep_once().executions == 0


def test_a_node_keeps_the_two_newest_runs_of_a_job_with_keep_runs_2(tmp_path: Path) -> None:
    script = tmp_path / "tick.sh"
    script.write_text("echo tick $DCRON_FIRE_TIME\n")
    with embedded_node(tmp_path, node_id="keeper") as node, client_for(node) as client:
        runner = CliRunner()
        base = ["--endpoint", node.endpoint, "--data-dir", str(node.settings.data_dir)]
        result = runner.invoke(
            cli,
            [*base, "schedule", "tick", "-c", "*/1 * * * * *", "-i", "sh", "-s", str(script), "--keep-runs", "2"],
            env=CLEAN_ENV,
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert client.show("tick")["job"]["keep_runs"] == 2

        def finished() -> list[dict[str, Any]] | None:
            rows = [e for e in client.executions("tick", limit=100) if e["status"] != "running" and e["log"]]
            return rows if len(rows) >= 5 else None

        wait_for(finished, 20, message="5 finished runs of tick")
        client.disable("tick")
        wait_for(lambda: all(e["status"] != "running" for e in client.executions("tick", limit=100)), 10)
        before = client.executions("tick", limit=100)
        assert node.retention is not None  # the leader's sweeper
        report = node.retention.retention.sweep_once()
        after = client.executions("tick", limit=100)
        assert [e["id"] for e in after] == [e["id"] for e in before[:2]]
        assert report.executions == len(before) - 2
        for e in after:
            assert b"tick" in client.logs(e["id"])
        gone = [e for e in before[2:] if e["log"]]
        assert gone and not any(node.objects.exists(e["log"]) for e in gone)


def test_cli_retention_options_and_the_schedule_many_file(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("true\n")
    jobs = tmp_path / "jobs.jsonl"
    lines = [
        {"name": "many-a", "schedule": "@daily", "interpreter": "sh", "script": str(script), "keep_days": 7},
        {"name": "many-b", "schedule": "@daily", "interpreter": "sh", "script": str(script), "keep_runs": -1},
    ]
    jobs.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with embedded_node(tmp_path, node_id="cli", keep_runs=5, keep_days=0) as node, client_for(node) as client:
        assert node.retention is not None and node.retention.retention.policy == Policy(5, 0)
        runner = CliRunner()
        base = ["--endpoint", node.endpoint, "--data-dir", str(node.settings.data_dir)]

        def dcron(*args: str) -> Any:
            return runner.invoke(cli, [*base, *args], env=CLEAN_ENV, catch_exceptions=False)

        result = dcron("schedule-many", str(jobs))
        assert result.exit_code == 1 and "keep_runs must be an integer between 0 and 1000000" in result.output
        assert client.show("many-a")["job"]["keep_days"] == 7
        assert "keep_runs" not in client.show("many-a")["job"]  # the cluster's
        base_args = ["schedule", "one", "-c", "@daily", "-i", "sh", "-s", str(script)]
        assert dcron(*base_args, "--keep-days", "3", "--tz", "Europe/Paris").exit_code == 0
        job = client.show("one")["job"]
        assert (job["keep_days"], job["tz"], "keep_runs" in job) == (3, "Europe/Paris", False)
        assert dcron(*base_args, "--update").exit_code == 0  # a new definition: the cluster's again
        assert "keep_days" not in client.show("one")["job"]
        assert dcron(*base_args, "--keep-runs", "-2").exit_code == 2
