"""Registering and listing 100,000 jobs on one embedded ``dcrond``: SCHEDULE_MANY and paged LIST.

Run from the repository root::

    python bench/list_bench.py                  # 100,000 jobs (about 1-2 minutes on 2 cores)
    python bench/list_bench.py --jobs 20000 --single 500

It starts one ``dcrond`` (SQLite store, ``file://`` objects, file-lock election) in a temporary
folder, puts one script in its object store, and measures from this (client) process:

- **batch registration**: N jobs with ``SCHEDULE_MANY`` (``Client.schedule_many``: requests of
  5,000 jobs), every job naming the script by location.  Schedules are daily, at one of the
  1,440 minutes of the day, so 1,440 distinct expressions (the node caches parsed ones);
- **batch, distinct expressions**: 2,000 more jobs whose 6-field expressions all differ (every
  one is parsed: the worst case of the validation);
- **paged LIST**: every job, ``limit`` 1,000 per page, following the ``next`` cursor: per-page
  latency p50 / p99 / max and the total; twice: right after the registration (the leader is
  still reading the change feed of the new jobs, in the same process) and once the node is idle;
- **LIST, distinct expressions**: one page of 1,000 jobs whose expressions all differ (each
  job's next fire time computed);
- **LIST --state enabled**: every enabled job, the same way (a state is compared on at most
  5,000 jobs a page);
- **single SCHEDULE**: ``--single`` jobs (2,000) registered one call at a time by one client, the
  peer the batch is compared with;
- **restart**: the node stopped and started again: seconds from its start to ``leader loaded``
  (every job read) and its resident memory then.

``--cluster`` runs the same against the test services (``scripts/services.sh start zookeeper
pouchdb``, whose addresses ``.services/env`` holds): the node's store is pouchdb-server (a fresh
database prefix), its election ZooKeeper (a fresh chroot), its objects a local folder.

It prints the figures and writes them to ``bench/results/list_bench-TIMESTAMP.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

import checkout  # before libdcron: puts this checkout's packages first on sys.path

from libdcron.client import Client
from libdcron.errors import DcronError

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_log(log: Path, pattern: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_text(errors="replace")):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{pattern!r} not in {log} after {timeout}s")


def wait_idle(*pids: int, timeout: float = 90.0) -> float:
    """Seconds until the node (and pouchdb-server, in cluster mode) use less than 5% of a core
    each over half a second (the node runs the jobs falling due meanwhile: at most ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(0.5)
        if all(cpu_seconds(pid) - b < 0.025 for pid, b in zip(pids, before, strict=True)):
            break
    return time.monotonic() - start


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def list_all(client: Client, page: int = 1000, state: str | None = None) -> dict[str, float]:
    latencies: list[float] = []
    count = 0
    cursor: str | None = None
    started = time.perf_counter()
    while True:
        t = time.perf_counter()
        reply = client.list_page(page, cursor, state)
        latencies.append(time.perf_counter() - t)
        count += len(reply["jobs"])
        cursor = reply["next"]
        if cursor is None:
            break
    return {
        "jobs": count,
        "pages": len(latencies),
        "p50_s": median(latencies),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies),
        "total_s": time.perf_counter() - started,
    }


def services_env() -> dict[str, str]:
    """The test services' addresses (``.services/env``, written by ``scripts/services.sh``)."""
    path = ROOT / ".services" / "env"
    if not path.exists():
        raise SystemExit(f"--cluster: no {path}; run scripts/services.sh start zookeeper pouchdb")
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            env[key.strip()] = value.strip().strip("'\"")
    missing = [k for k in ("DCRON_TEST_COUCHDB", "DCRON_TEST_ZK") if k not in env]
    if missing:
        raise SystemExit(f"--cluster: {', '.join(missing)} not in {path}; start zookeeper and pouchdb")
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=2000)
    parser.add_argument("--cluster", action="store_true", help="pouchdb-server + ZooKeeper from .services/env")
    args = parser.parse_args()
    command = " ".join(["python", "bench/list_bench.py", *sys.argv[1:]])
    results: dict[str, object] = {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory(prefix="dcron-list-bench-") as tmp:
        data = Path(tmp) / "data"
        log = Path(tmp) / "node.log"
        port = free_port()
        endpoint = f"tcp://127.0.0.1:{port}"
        extra: list[str] = []
        if args.cluster:
            env = services_env()
            tag = uuid.uuid4().hex[:8]
            extra = ["--store", f"{env['DCRON_TEST_COUCHDB']}/listbench{tag}",
                     "--election", f"zk://{env['DCRON_TEST_ZK']}/dcron-listbench-{tag}",
                     "--objects", f"file://{data / 'objects'}"]  # fmt: skip
            results["mode"] = "cluster: pouchdb-server store, ZooKeeper election, file:// objects"
        else:
            results["mode"] = "embedded: SQLite store, file-lock election, file:// objects"
        print(results["mode"])
        store_pids: tuple[int, ...] = ()
        if args.cluster:
            pid_file = ROOT / ".services" / "pouchdb" / "pid"
            store_pids = (int(pid_file.read_text().split()[0]),) if pid_file.exists() else ()

        def start() -> subprocess.Popen[bytes]:
            with open(log, "ab") as out:
                return subprocess.Popen(
                    [sys.executable, "-m", "libdcron.daemon", "--data-dir", str(data), "--listen", endpoint,
                     "--node-id", "listbench", "--log-level", "INFO", *extra],
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
                    env=checkout.node_env(),
                )  # fmt: skip

        proc = start()
        try:
            wait_log(log, r"leader loaded", 30)
            script = data / "objects" / "jobs" / "bench.sh"
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text("true\n")
            with Client(endpoint, timeout=120, data_dir=data) as client:
                client.status()
                jobs = [
                    {"name": f"job-{i:06d}", "schedule": f"{i % 60} {i // 60 % 24} * * *", "interpreter": "sh",
                     "script": "jobs/bench.sh"}
                    for i in range(args.jobs)
                ]  # fmt: skip
                t = time.perf_counter()
                reply = client.schedule_many(jobs)
                took = time.perf_counter() - t
                assert len(reply["created"]) == args.jobs and not reply["failed"], reply["failed"][:3]
                results["batch"] = {"jobs": args.jobs, "seconds": took, "jobs_per_s": args.jobs / took}
                print(f"SCHEDULE_MANY: {args.jobs} jobs in {took:.2f} s = {args.jobs / took:,.0f} jobs/s")

                try:
                    results["list_busy"] = busy = list_all(client)
                except DcronError as exc:  # (pouchdb-server, busy with the leader's reads, can time out)
                    results["list_busy"] = {"error": str(exc)}
                    print(f"LIST right after (leader still busy): failed: {exc}")
                else:
                    print(
                        f"LIST right after (leader still busy): {busy['jobs']:.0f} jobs, {busy['pages']:.0f} pages, "
                        f"p50 {busy['p50_s']:.3f} s, p99 {busy['p99_s']:.3f} s, max {busy['max_s']:.3f} s, "
                        f"total {busy['total_s']:.2f} s"
                    )
                settle = wait_idle(proc.pid)
                if store_pids:  # pouchdb-server indexing what was written
                    settle += wait_idle(*store_pids, timeout=300)
                results["idle_after_s"] = settle
                results["list_idle"] = idle = list_all(client)
                print(
                    f"LIST, node idle (after {settle:.1f} s more): p50 {idle['p50_s']:.3f} s, "
                    f"p99 {idle['p99_s']:.3f} s, max {idle['max_s']:.3f} s, total {idle['total_s']:.2f} s"
                )
                try:
                    results["list_enabled"] = enabled = list_all(client, state="enabled")
                except DcronError as exc:
                    results["list_enabled"] = {"error": str(exc)}
                    print(f"LIST --state enabled: failed: {exc}")
                else:
                    print(
                        f"LIST --state enabled: {enabled['jobs']:.0f} jobs, p50 {enabled['p50_s']:.3f} s, "
                        f"p99 {enabled['p99_s']:.3f} s, max {enabled['max_s']:.3f} s"
                    )

                distinct = [
                    {"name": f"zdistinct-{i:05d}", "schedule": f"{i % 60} {i // 60 % 60} {i // 3600 % 24} * * *",
                     "interpreter": "sh", "script": "jobs/bench.sh"}
                    for i in range(7, 7 + 2000 * 37, 37)
                ]  # fmt: skip
                t = time.perf_counter()
                reply = client.schedule_many(distinct)
                took = time.perf_counter() - t
                assert len(reply["created"]) == len(distinct), reply["failed"][:3]
                results["batch_distinct"] = {"jobs": len(distinct), "jobs_per_s": len(distinct) / took}
                print(f"SCHEDULE_MANY, all expressions distinct: {len(distinct)} jobs, {len(distinct) / took:,.0f} jobs/s")
                wait_idle(proc.pid)
                pages = []
                for _ in range(5):
                    t = time.perf_counter()
                    page = client.list_page(1000, after="zdistinct")
                    pages.append(time.perf_counter() - t)
                    assert len(page["jobs"]) == 1000
                results["list_distinct_page_s"] = median(pages)
                print(f"LIST, one page of 1000 distinct expressions: {median(pages):.3f} s (median of 5)")

                t = time.perf_counter()
                for i in range(args.single):
                    client.call("SCHEDULE", {"name": f"single-{i:05d}", "schedule": f"{i % 60} {i // 60 % 24} * * *",
                                             "interpreter": "sh", "script": "jobs/bench.sh"})  # fmt: skip
                took = time.perf_counter() - t
                results["single"] = {"jobs": args.single, "jobs_per_s": args.single / took}
                print(f"SCHEDULE one at a time: {args.single} jobs, {args.single / took:,.0f} jobs/s")
                speedup = results["batch"]["jobs_per_s"] / (args.single / took)  # type: ignore[index]
                print(f"batch / single: {speedup:.1f}x")
            # A new leader's load of every job: the node restarted.
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
            wait_idle(*store_pids, timeout=60)
            log.write_text("")
            t = time.perf_counter()
            proc = start()
            wait_log(log, r"leader loaded", 300)
            took = time.perf_counter() - t
            loaded = re.search(r"leader loaded (\d+) enabled jobs", log.read_text(errors="replace"))
            results["restart_load"] = {
                "seconds": took, "rss_mib": rss_mib(proc.pid), "jobs": int(loaded[1]) if loaded else None
            }  # fmt: skip
            print(f"restart: leader loaded {loaded[1] if loaded else '?'} jobs {took:.2f} s after the start, "
                  f"RSS {rss_mib(proc.pid):.0f} MiB")  # fmt: skip
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"list_bench-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"command: {command}\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
