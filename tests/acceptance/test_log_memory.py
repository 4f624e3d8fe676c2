"""A 200 MiB run log streams through a real ``dcrond`` without the node holding it in memory.

The job writes 200 MiB to stdout in 1 MiB chunks; the worker spools it to disk and uploads it to
the object store (moto S3, and a ``file://`` folder).  The node's peak resident set size
(``VmHWM`` in ``/proc/PID/status``) may rise by less than 50 MiB over the run, and the stored log
has exactly the bytes written.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service

from .harness import Cluster, NodeProc, wait_for

MiB = 1 << 20
CHUNKS = 200
LOG_SIZE = CHUNKS * MiB
LOG_CAP = 300_000_000  # above the log's size: nothing is truncated
MAX_RSS_RISE = 50 * MiB

WRITER = f"""\
import sys
chunk = (b"0123456789abcdef" * 65535 + b"0123456789abcde\\n")
assert len(chunk) == {MiB}
out = sys.stdout.buffer
for _ in range({CHUNKS}):
    out.write(chunk)
out.flush()
"""

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def peak_rss(node: NodeProc) -> int:
    """The process's peak resident set size in bytes (VmHWM)."""
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            assert unit == "kB"
            return int(value) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


@pytest.fixture(params=["s3", "file"])
def objects(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict]:  # type: ignore[type-arg]
    """The node's object-store arguments, and a store the test reads back through."""
    if request.param == "file":
        from dcron_plugins.storage_local import LocalObjectStore

        url = f"file://{tmp_path / 'objects'}"
        yield {"args": ["--objects", url], "env": {}, "store": LocalObjectStore(url)}
        return
    from dcron_plugins.storage_s3 import S3ObjectStore

    endpoint = service("S3", "moto S3 server")
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    url = f"s3://dcron-mem-{uuid.uuid4().hex[:12]}/logs-test"
    store = S3ObjectStore(url, {"s3_endpoint_url": endpoint})
    yield {"args": ["--objects", url, "-o", f"s3_endpoint_url={endpoint}"], "env": AWS_ENV, "store": store}
    bucket = url.removeprefix("s3://").split("/")[0]
    try:  # the shared moto keeps objects in memory (or its temp files): free them
        store.fs.rm(bucket, recursive=True)
    except Exception as exc:  # cleanup only
        print(f"could not remove bucket {bucket}: {exc!r}")


def test_a_200_mib_log_is_streamed_not_held_in_memory(
    cluster: Cluster,
    tmp_path: Path,
    objects: dict,  # type: ignore[type-arg]
) -> None:
    cluster.env_extra.update(objects["env"])
    node = cluster.add("solo", "--log-cap", str(LOG_CAP), *objects["args"])
    cluster.wait_ready()
    script = tmp_path / "big.py"
    script.write_text(WRITER)
    cluster.dcron("schedule", "big", "-c", "0 0 1 1 *", "-i", "python", "-s", str(script))
    time.sleep(0.5)  # let the node settle after serving the first requests
    before = peak_rss(node)
    started = time.monotonic()
    cluster.dcron("run", "big")

    def finished() -> dict | None:  # type: ignore[type-arg]
        rows = cluster.json("executions", "big")["executions"]
        return rows[0] if rows and rows[0]["status"] != "running" and rows[0]["log"] else None

    row = wait_for(finished, 60, 0.25)
    elapsed = time.monotonic() - started
    after = peak_rss(node)
    rise = after - before
    print(
        f"\n{objects['args'][1].split(':')[0]}: dcrond VmHWM {before / MiB:.1f} MiB -> {after / MiB:.1f} MiB "
        f"(+{rise / MiB:.1f} MiB) for a {LOG_SIZE // MiB} MiB log, run+upload {elapsed:.1f}s"
    )
    assert row["status"] == "succeeded", row
    assert rise < MAX_RSS_RISE, f"dcrond's peak RSS rose by {rise / MiB:.1f} MiB for a 200 MiB log"
    info = objects["store"].stat(row["log"])
    assert info.size == LOG_SIZE
    assert objects["store"].read_range(row["log"], LOG_SIZE - 16, 100) == b"0123456789abcde\n"
    spool = cluster.data_dir / "nodes" / "solo" / "logs"
    assert not any(spool.iterdir()), "the spooled log is removed after its upload"
    assert node.alive()
    assert os.path.getsize(node.log_path) < 1 * MiB
