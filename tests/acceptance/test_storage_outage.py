"""Object storage goes away while a run is in progress, on a real ``dcrond`` over S3.

The test runs its own moto server (so it can stop and restart it without disturbing anyone
else's): the run ends while S3 is down, its execution is completed without a log and the log
waits on local disk; when S3 is back (empty: moto keeps buckets in memory) the log is uploaded,
the bucket re-created, and the execution points at it.  A run whose script is not cached on the
node fails with a reason that names object storage; one whose script is cached runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import Cluster, free_port, wait_for

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}
#: Caps the outbox's retry interval, so the test sees the upload soon after S3 is back.
MAX_BACKOFF = "4"


class MotoServer:
    """One ``moto_server`` on a fixed loopback port, which the test stops and starts again."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint, timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> None:
        program = shutil.which("moto_server")
        command = [program] if program else [sys.executable, "-m", "moto.server"]
        log = open(self.root / "moto.log", "ab")  # noqa: SIM115 - kept by the child
        self.proc = subprocess.Popen(
            [*command, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
        )
        log.close()
        wait_for(self._answers, 20, 0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert not self._answers()


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    if shutil.which("moto_server") is None:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            message = "moto[server] is not installed (pip install -e '.[test]')"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    server = MotoServer(tmp_path)
    server.start()
    yield server
    server.stop()


def newest(cluster: Cluster, job: str) -> dict[str, Any] | None:
    rows = cluster.json("executions", job)["executions"]
    return rows[0] if rows else None


def finished(cluster: Cluster, job: str, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        row = newest(cluster, job)
        return row if row and row["status"] != "running" else None

    row: dict[str, Any] = wait_for(check, timeout, 0.2)
    return row


def test_log_upload_waits_out_an_object_storage_outage(
    cluster: Cluster, moto: MotoServer, tmp_path: Path
) -> None:
    cluster.env_extra.update(AWS_ENV)
    cluster.env_extra["DCRON_OUTBOX_MAX_BACKOFF"] = MAX_BACKOFF
    node = cluster.add(
        "solo",
        "--objects",
        "s3://outage/dcron",
        "-o",
        f"s3_endpoint_url={moto.endpoint}",
        "-o",
        "s3_connect_timeout=1",
        "-o",
        "s3_retries=1",
    )
    cluster.wait_ready()
    marker = tmp_path / "started"
    slow = tmp_path / "slow.py"
    slow.write_text(
        "import os, pathlib, time\n"
        f"pathlib.Path({str(marker)!r}).write_text(os.environ['DCRON_EXECUTION_ID'])\n"
        "time.sleep(2)\n"
        "print('slow done', os.environ['DCRON_EXECUTION_ID'], flush=True)\n"
    )
    fresh = tmp_path / "fresh.py"
    fresh.write_text("print('never fetched while S3 is down')\n")
    cluster.dcron("schedule", "slow", "-c", "0 0 1 1 *", "-i", "python", "-s", str(slow))
    cluster.dcron("schedule", "fresh", "-c", "0 0 1 1 *", "-i", "python", "-s", str(fresh))
    spool = cluster.data_dir / "nodes" / "solo" / "logs"
    outbox = cluster.data_dir / "nodes" / "solo" / "outbox"

    # 1. The run starts while S3 is up (its script is fetched), S3 goes away before it ends.
    cluster.dcron("run", "slow")
    wait_for(marker.exists, 20)
    moto.stop()
    down_at = time.monotonic()
    first = finished(cluster, "slow")
    assert first["status"] == "succeeded", first
    assert first["exit_code"] == 0
    assert first["log"] is None, "the log is not in object storage yet"
    spooled = list(spool.iterdir())
    assert len(spooled) == 1
    assert spooled[0].read_text().strip() == f"slow done {first['id']}"
    assert len(list(outbox.glob("*.json"))) == 1, "the upload is journaled"
    status = cluster.json("status")
    assert status["outbox"] == 1
    assert node.alive()
    failed_logs = cluster.dcron("logs", first["id"], check=False)
    assert failed_logs.returncode == 1 and "has no uploaded log (yet)" in failed_logs.stderr
    assert "object storage unavailable, keeping log" in node.log()

    # 2. While S3 is down: a cached script runs, one never fetched fails with a clear reason.
    cluster.dcron("run", "fresh")
    cluster.dcron("run", "slow")
    error = finished(cluster, "fresh", 40)
    assert error["status"] == "error", error
    assert "object storage unavailable while fetching script" in error["reason"]
    assert "s3://outage/dcron/scripts/fresh/" in error["reason"]
    assert error["log"] is None
    second = finished(cluster, "slow")
    assert second["id"] != first["id"]
    assert second["status"] == "succeeded", second
    assert second["log"] is None
    assert len(list(spool.iterdir())) == 2
    assert cluster.json("status")["outbox"] == 2
    down_for = time.monotonic() - down_at

    # 3. S3 is back, empty: the bucket is re-created and both logs are uploaded.
    moto.start()
    back_at = time.monotonic()

    def uploaded() -> list[dict[str, Any]] | None:
        rows = [r for r in cluster.json("executions", "slow")["executions"] if r["log"]]
        return rows if len(rows) == 2 else None

    rows = wait_for(uploaded, 30, 0.25)
    print(
        f"\nS3 down for {down_for:.1f}s; logs uploaded {time.monotonic() - back_at:.1f}s after it came back"
    )
    for row in rows:
        assert row["status"] == "succeeded"
        assert row["log"] == f"s3://outage/dcron/logs/slow/{row['fire_time']}_1.log"
        assert cluster.dcron("logs", row["id"]).stdout.strip() == f"slow done {row['id']}"
    wait_for(lambda: not any(spool.iterdir()), 5)
    wait_for(lambda: cluster.json("status")["outbox"] == 0, 5)
    assert node.alive()
