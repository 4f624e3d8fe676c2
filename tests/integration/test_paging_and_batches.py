"""LIST by pages (``limit``, ``after``, ``state``) and SCHEDULE_MANY, on a real embedded node.

One node serves the module; every job here is scheduled once a year, so nothing runs.  The
Python client and the CLI (click's CliRunner) are both exercised.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from libdcron.api_base import MAX_BATCH
from libdcron.cli import cli
from libdcron.client import Client
from libdcron.errors import ValidationError
from libdcron.node import Node
from libdcron.testing import client_for, embedded_node

YEARLY = "0 0 1 1 *"
CLEAN_ENV: dict[str, str | None] = {
    k: None for k in os.environ if k.startswith("DCRON_") and not k.startswith("DCRON_TEST_")
}
#: Jobs the ``paged`` fixture registers: page-000 ... page-136, every fourth one disabled.
PAGED = 137


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with embedded_node(tmp_path_factory.mktemp("paging"), node_id="paging") as n:
        n.objects.put_bytes(b"echo batch\n", n.objects.url_for("jobs/batch.sh"))
        yield n


@pytest.fixture(scope="module")
def client(node: Node) -> Iterator[Client]:
    with client_for(node, timeout=10) as c:
        yield c


def job(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "schedule": YEARLY, "interpreter": "sh", "script": "jobs/batch.sh", **fields}


@pytest.fixture(scope="module")
def paged(client: Client) -> list[str]:
    """The names of the paged jobs, in order; the disabled ones are those at multiples of 4."""
    names = [f"page-{i:03d}" for i in range(PAGED)]
    reply = client.schedule_many([job(n) for n in reversed(names)])
    assert sorted(reply["created"]) == names and reply["updated"] == [] and reply["failed"] == []
    for i in range(0, PAGED, 4):
        client.disable(names[i])
    return names


def walk(client: Client, limit: int, state: str | None = None) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        reply = client.list_page(limit, cursor, state)
        assert len(reply["jobs"]) <= limit
        seen.extend(j["name"] for j in reply["jobs"])
        cursor = reply["next"]
        if cursor is None:
            return seen
        assert cursor == reply["jobs"][-1]["name"] and len(reply["jobs"]) == limit


def pages_only(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("page-")]


# ---------------------------------------------------------------------------------------------
# LIST
# ---------------------------------------------------------------------------------------------


def test_cursor_walks_every_job_exactly_once(client: Client, paged: list[str]) -> None:
    for limit in (1, 10, PAGED, 1000):
        seen = walk(client, limit)
        assert seen == sorted(seen) and len(seen) == len(set(seen))
        assert pages_only(seen) == paged
    streamed = [j["name"] for j in client.iter_jobs(page_size=16)]
    assert pages_only(streamed) == paged
    assert [j["name"] for j in client.iter_jobs(page_size=5, after="page-130")] == paged[131:]


def test_a_page_has_the_jobs_and_their_next_fire_time(client: Client, paged: list[str]) -> None:
    reply = client.list_page(3, after="page-003")
    assert [j["name"] for j in reply["jobs"]] == paged[4:7] and reply["next"] == "page-006"
    disabled, enabled = reply["jobs"][0], reply["jobs"][1]
    assert disabled["enabled"] is False and disabled["next"] is None
    assert enabled["enabled"] is True and enabled["next"].endswith("-01-01T00:00:00Z")
    assert enabled["schedule"] == YEARLY and enabled["interpreter"] == "sh"
    assert client.list(2, after="page-134") == client.list_page(2, after="page-134")["jobs"]
    last = client.list_page(1000, after="page-130")
    assert [j["name"] for j in last["jobs"]] == paged[131:] and last["next"] is None


def test_state_filter(client: Client, paged: list[str]) -> None:
    disabled = [n for i, n in enumerate(paged) if i % 4 == 0]
    enabled = [n for n in paged if n not in disabled]
    assert pages_only(walk(client, 7, "disabled")) == disabled
    assert pages_only(walk(client, 7, "enabled")) == enabled
    assert pages_only(walk(client, 50, "all")) == paged
    assert all(j["enabled"] is False for j in client.iter_jobs("disabled", page_size=9))


def test_limit_bounds(client: Client, paged: list[str]) -> None:
    first = client.list_page()
    assert len(first["jobs"]) == 100 and first["next"] == first["jobs"][-1]["name"]
    assert len(client.list_page(1000)["jobs"]) >= PAGED
    for bad in (0, 1001, -1):
        with pytest.raises(ValidationError, match="limit must be an integer between 1 and 1000"):
            client.list_page(bad)
    with pytest.raises(ValidationError, match="state must be one of"):
        client.list_page(10, state="paused")


# ---------------------------------------------------------------------------------------------
# SCHEDULE_MANY
# ---------------------------------------------------------------------------------------------


def test_schedule_many_creates(client: Client) -> None:
    reply = client.schedule_many(
        [job("many-a"), job("many-b", tz="Europe/Paris", timeout=30, max_attempts=5)]
    )
    assert reply == {"created": ["many-a", "many-b"], "updated": [], "failed": []}
    shown = client.show("many-b")["job"]
    assert (shown["tz"], shown["timeout"], shown["max_attempts"], shown["version"]) == ("Europe/Paris", 30, 5, 1)
    assert shown["script"].endswith("/objects/jobs/batch.sh") and shown["script_sha256"] is None
    assert client.show("many-a")["next"]


def test_schedule_many_conflicts_without_update_and_updates_with_it(client: Client) -> None:
    client.schedule_many([job("many-u1"), job("many-u2")])
    client.disable("many-u2")
    before = client.show("many-u1")["job"]
    again = client.schedule_many([job("many-u1", schedule="0 6 * * *"), job("many-u3")])
    assert again["created"] == ["many-u3"] and again["updated"] == []
    assert [(f["index"], f["name"], f["error"]) for f in again["failed"]] == [(0, "many-u1", "ConflictError")]
    assert "already exists" in again["failed"][0]["message"]
    assert client.show("many-u1")["job"]["schedule"] == YEARLY

    updated = client.schedule_many(
        [job("many-u1", schedule="0 6 * * *"), job("many-u2", timeout=9), job("many-u4")], update=True
    )
    assert updated == {"created": ["many-u4"], "updated": ["many-u1", "many-u2"], "failed": []}
    after = client.show("many-u1")["job"]
    assert after["schedule"] == "0 6 * * *" and after["version"] == 2 and after["created"] == before["created"]
    u2 = client.show("many-u2")["job"]
    assert u2["timeout"] == 9 and u2["enabled"] is False  # an update keeps the job's state


def test_schedule_many_reports_each_invalid_job(client: Client) -> None:
    jobs = [
        job("v-ok1"),
        job("v-bad-cron", schedule="* 25 * * *"),
        job("bad name!"),
        job("v-ok2"),
        job("v-interp", interpreter="cobol"),
        job("v-ok1"),  # twice
        job("v-timeout", timeout=-1),
        {"name": "v-noscript", "schedule": YEARLY, "interpreter": "sh"},
        job("v-abs", script="/nonexistent/x.sh"),  # an absolute path that is no local file
        job("v-tz", tz="Mars/Olympus"),
    ]
    reply = client.schedule_many(jobs)
    assert reply["created"] == ["v-ok1", "v-ok2"] and reply["updated"] == []
    failed = {f["index"]: f for f in reply["failed"]}
    assert sorted(failed) == [1, 2, 4, 5, 6, 7, 8, 9]
    assert "field 2 (hour)" in failed[1]["message"] and failed[1]["name"] == "v-bad-cron"
    assert failed[2]["error"] == "ValidationError"
    assert "unknown interpreter 'cobol'" in failed[4]["message"]
    assert "given twice in this request (first at index 0)" in failed[5]["message"]
    assert "timeout" in failed[6]["message"] and "script is required" in failed[7]["message"]
    assert all(f["error"] == "ValidationError" for f in failed.values())
    names = {j["name"] for j in client.iter_jobs()}
    assert {"v-ok1", "v-ok2"} <= names and not {"v-bad-cron", "v-interp", "v-noscript"} & names


def test_schedule_many_missing_script_location_checked_once(
    client: Client, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    resolve = node.resolve_objects

    def counting(url: str) -> Any:
        lookups.append(url)
        return resolve(url)

    monkeypatch.setattr(node, "resolve_objects", counting)
    jobs = [job(f"miss-{i}", script="jobs/missing.sh") for i in range(5)] + [job("miss-ok")]
    reply = client.schedule_many(jobs)
    assert reply["created"] == ["miss-ok"]
    assert [f["index"] for f in reply["failed"]] == [0, 1, 2, 3, 4]
    assert all(f["error"] == "NotFoundError" and "not found in object storage" in f["message"] for f in reply["failed"])
    assert sorted(set(lookups)) == sorted(lookups) and len(lookups) == 2  # one per distinct location


def test_schedule_many_uploads_script_content(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "local.sh"
    path.write_bytes(b"echo local\n")
    reply = client.schedule_many([job("content-1", script=str(path)), job("content-2", script=str(path))])
    assert reply["created"] == ["content-1", "content-2"]
    shown = client.show("content-2")["job"]
    assert shown["script_sha256"] == hashlib.sha256(b"echo local\n").hexdigest()
    assert "/scripts/content-2/" in shown["script"]


def test_schedule_many_request_limits(node: Node, client: Client) -> None:
    with pytest.raises(ValidationError, match="jobs must be a list"):
        client.call("SCHEDULE_MANY", {"jobs": {"name": "x"}})
    with pytest.raises(ValidationError, match=f"at most {MAX_BATCH}"):
        node.api.handle("SCHEDULE_MANY", {"jobs": [job(f"x{i}") for i in range(MAX_BATCH + 1)]})
    reply = node.api.handle("SCHEDULE_MANY", {"jobs": [7, None]})
    assert [f["index"] for f in reply["failed"]] == [0, 1] and reply["created"] == []
    content = base64.b64encode(b"not base64 at all").decode() + "!"
    bad = node.api.handle("SCHEDULE_MANY", {"jobs": [{**job("b64"), "script_content": content}]})
    assert bad["failed"][0]["message"] == "script_content must be base64"
    assert client.schedule_many([]) == {"created": [], "updated": [], "failed": []}


def test_client_sends_chunks(client: Client) -> None:
    jobs = [job(f"chunk-{i:02d}") for i in range(11)] + [job("chunk-bad", schedule="nope")]
    reply = client.schedule_many(jobs, chunk_size=4)
    assert reply["created"] == [f"chunk-{i:02d}" for i in range(11)]
    assert [f["index"] for f in reply["failed"]] == [11]  # its index in the whole list
    with pytest.raises(ValidationError):
        client.schedule_many(jobs, chunk_size=5001)


# ---------------------------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dcron(node: Node) -> Any:
    runner = CliRunner()
    base = ["--endpoint", node.endpoint, "--data-dir", str(node.settings.data_dir)]

    def invoke(*args: str) -> Any:
        return runner.invoke(cli, [*base, *args], env=CLEAN_ENV, catch_exceptions=False)

    return invoke


def test_cli_list_pages(dcron: Any, paged: list[str]) -> None:
    result = dcron("list", "--limit", "3", "--after", "page-009")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "STATE", "SCHEDULE", "TZ", "NEXT"]
    assert [r.split()[0] for r in rows] == paged[10:13]
    assert "more jobs: dcron list --after page-012" in result.stderr

    disabled = json.loads(dcron("list", "--state", "disabled", "--limit", "1000", "--json").stdout)
    assert pages_only([j["name"] for j in disabled["jobs"]]) == paged[::4] and disabled["next"] is None

    page = json.loads(dcron("list", "--limit", "2", "--json").stdout)
    assert len(page["jobs"]) == 2 and page["next"] == page["jobs"][1]["name"]

    assert dcron("list", "--limit", "0").exit_code == 2
    assert dcron("list", "--state", "paused").exit_code == 2


def test_cli_list_all(dcron: Any, paged: list[str]) -> None:
    result = dcron("list", "--all", "--limit", "10")
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    names = [r.split()[0] for r in rows]
    assert header.startswith("NAME") and pages_only(names) == paged and names == sorted(names)
    assert result.stderr == ""

    every = json.loads(dcron("list", "--all", "--limit", "7", "--state", "enabled", "--json").stdout)
    assert every["next"] is None
    assert pages_only([j["name"] for j in every["jobs"]]) == [n for i, n in enumerate(paged) if i % 4]
    assert json.loads(dcron("list", "--all", "--after", "zzz", "--json").stdout) == {"jobs": [], "next": None}


def test_cli_schedule_many_json_lines(dcron: Any, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    lines = [json.dumps(job(f"cli-many-{i}")) for i in range(3)]
    path.write_text("\n".join([lines[0], "", *lines[1:]]) + "\n")
    result = dcron("schedule-many", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == "created 3, updated 0, failed 0\n"

    again = dcron("schedule-many", str(path))
    assert again.exit_code == 1
    first, *failures = again.stdout.splitlines()
    assert first == "created 0, updated 0, failed 3"
    assert failures[0].startswith("failed #0 cli-many-0: a job named 'cli-many-0' already exists")

    updated = dcron("schedule-many", str(path), "--update", "--json")
    assert updated.exit_code == 0
    assert json.loads(updated.stdout) == {
        "created": [], "updated": ["cli-many-0", "cli-many-1", "cli-many-2"], "failed": []
    }  # fmt: skip


def test_cli_schedule_many_json_array(dcron: Any, tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    local = tmp_path / "local.sh"
    local.write_text("echo array\n")
    jobs = [job("cli-arr-1", script=str(local)), job("cli-arr-2", schedule="* 99 * * *"), job("cli-arr-3")]
    path.write_text(json.dumps(jobs, indent=2))
    result = dcron("schedule-many", str(path), "--chunk", "1")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == "created 2, updated 0, failed 1"
    assert result.stdout.splitlines()[1].startswith("failed #1 cli-arr-2: invalid cron expression")


def test_cli_schedule_many_refuses_a_bad_file(dcron: Any, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(job("x")) + "\n{not json\n")
    with pytest.raises(ValidationError, match="line 2 is not JSON"):
        dcron("schedule-many", str(path))
    path.write_text(json.dumps({**job("x"), "cron": "@daily"}) + "\n")
    with pytest.raises(ValidationError, match="unknown field 'cron'"):
        dcron("schedule-many", str(path))
