"""How one embedded ``dcrond`` copes with thousands of jobs: load, memory, idle CPU, listing.

Run from the repository root::

    python bench/scale_bench.py                 # 500 jobs (the peer) and 5,000 jobs
    python bench/scale_bench.py --sizes 500 20000

For each size it starts a fresh node (SQLite store, file-lock election) in a temporary folder,
registers N jobs through the API (daily schedules spread over the day, none due within the next
hour, so no run disturbs the figures), restarts the node and measures:

- **load**: dcrond start to the leader's "loaded N enabled jobs" log line (the leader rebuilds its
  heap from the store and checks the 5-minute lookback of each job);
- **rss**: the node's resident memory after loading;
- **idle cpu**: CPU seconds the node uses over 20 s with every job scheduled and none due -- an
  event-driven leader sleeps until the earliest fire time, so this should not grow with N;
- **list**: wall time of listing every job (``LIST`` pages of 1,000; each job's next fire time).

The smallest size is the peer the others are compared with.

``--load-jobs N`` (e.g. ``python bench/scale_bench.py --load-jobs 100000``) measures the leader's
load alone at a larger scale: N enabled daily jobs (and one past execution of each) are written
straight into a fresh SQLite store in one transaction (registration is not what is measured), then
a fresh subprocess starts one embedded node on it and reports

- **load**: node start to the leader's ``ready`` (election, jobs, runs in progress, lookback), and
  the leader's own part (its creation at election to ``ready``);
- **rss** after loading and **peak rss** (``VmHWM``: the subprocess's own high-water mark);
- **idle cpu**: CPU seconds of the subprocess over 20 s with nothing due.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import checkout  # before libdcron: puts this checkout's packages first on sys.path

from libdcron.client import Client

IDLE_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_node(data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "libdcron.daemon", "--data-dir", str(data), "--listen",
             f"tcp://127.0.0.1:{port}", "--node-id", "scale", "--log-level", "INFO"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=checkout.node_env(),
        )  # fmt: skip


def wait_log(log: Path, pattern: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        if regex.search(log.read_text(errors="replace")):
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"{pattern!r} not in {log} after {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def schedules(n: int) -> list[str]:
    """Daily fire times spread over the day, none within the next hour."""
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        at = now + timedelta(hours=1) + timedelta(seconds=(i * 79_200) // max(n, 1))
        out.append(f"{at.minute} {at.hour} * * *")
    return out


def measure(n: int, base: Path) -> dict[str, float]:
    data = base / f"n{n}"
    log = base / f"n{n}.log"
    script = base / "job.sh"
    script.write_text("true\n")
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    proc = start_node(data, port, log)
    try:
        wait_log(log, r"leader loaded", 30)
        with Client(endpoint, timeout=30) as client:
            # Upload the script once; every job points at it.
            first = client.schedule("job-0", schedules(1)[0], "sh", script)
            url = first["job"]["script"]
        started = time.monotonic()

        def register(args: tuple[int, str]) -> None:
            i, expr = args
            with Client(endpoint, timeout=30) as c:
                c.call("SCHEDULE", {"name": f"job-{i}", "schedule": expr, "interpreter": "sh",
                                    "script": url, "update": True})  # fmt: skip

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(register, list(enumerate(schedules(n)))[1:]))
        registration = n / (time.monotonic() - started)
    finally:
        stop(proc)
    log.write_text("")
    t0 = time.monotonic()
    proc = start_node(data, port, log)
    try:
        loaded_at = wait_log(log, rf"leader loaded {n} enabled jobs", 120)
        line = next(x for x in log.read_text().splitlines() if "leader loaded" in x)
        load = loaded_at - t0
        time.sleep(1.0)
        rss = rss_mib(proc.pid)
        cpu0 = cpu_seconds(proc.pid)
        time.sleep(IDLE_SECONDS)
        idle_cpu = cpu_seconds(proc.pid) - cpu0
        with Client(endpoint, timeout=60) as client:
            t1 = time.monotonic()
            jobs = list(client.iter_jobs())  # every page of LIST
            list_s = time.monotonic() - t1
        assert len(jobs) == n, (len(jobs), n)
        print(f"  {line.split(': ', 1)[-1]}")
    finally:
        stop(proc)
    return {
        "jobs": n,
        "registration_per_s": registration,
        "load_s": load,
        "rss_mib": rss,
        "idle_cpu_s": idle_cpu,
        "list_s": list_s,
    }


def status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory figure (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def seed_store(data: Path, n: int) -> None:
    """N enabled daily jobs and one past (succeeded) execution of each, in one transaction."""
    from dcron_plugins.store_sqlite import SQLiteDocumentStore
    from dcron_plugins.store_sqlite.schema import _body_json

    from libdcron.document_base import next_rev as _next_rev
    from libdcron.model import Execution, Job, Status, format_instant

    objects = data / "objects"
    script = objects / "scripts" / "job" / ("0" * 64 + ".sh")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("true\n")
    store = SQLiteDocumentStore(str(data / "dcron.sqlite3"))
    store.open()
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = format_instant(now)
    jobs: list[tuple[str, str, str]] = []
    execs: list[tuple[str, str, str]] = []
    for i, expr in enumerate(schedules(n)):
        job = Job(
            f"job-{i}", expr, "sh", script.as_uri(), script_sha256="0" * 64, created=stamp, updated=stamp
        )
        text = _body_json(job.to_doc())
        jobs.append((job.name, _next_rev(None, text), text))
        minute, hour = (int(x) for x in expr.split()[:2])
        fire = (now - timedelta(days=1)).replace(hour=hour, minute=minute, second=0)
        ex = Execution(job.name, fire, 1, "scale", Status.SUCCEEDED, started=fire, ended=fire, exit_code=0)
        text = _body_json(ex.to_doc())
        execs.append((ex.id, _next_rev(None, text), text))
    with store._write("bench setup") as conn:
        for table, rows in (("jobs", jobs), ("executions", execs)):
            conn.executemany(f"INSERT INTO {table} (id, rev, body) VALUES (?, ?, ?)", rows)
            conn.executemany(
                "INSERT OR REPLACE INTO changes (collection, doc_id) VALUES (?, ?)",
                [(table, r[0]) for r in rows],
            )
    store.close()


def load_child(data: Path, n: int) -> int:
    """In a fresh process: start an embedded node on ``data``, print the figures as JSON."""
    import resource

    from libdcron import node as node_module
    from libdcron.config import NodeSettings
    from libdcron.node import Node

    elected: list[float] = []
    leader_class = node_module.Leader

    class TimedLeader(leader_class):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            elected.append(time.monotonic())
            super().__init__(*args, **kwargs)

    node_module.Leader = TimedLeader  # type: ignore[misc]
    base_rss = status_mib("VmRSS")
    node = Node(NodeSettings(data_dir=data, listen="tcp://127.0.0.1:0", node_id="scale"))
    t0 = time.monotonic()
    node.start()
    while node.leader is None or not node.leader.ready.is_set():
        time.sleep(0.005)
    ready = time.monotonic()
    loaded = len(node.leader.jobs)
    rss = status_mib("VmRSS")
    peak = status_mib("VmHWM")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    time.sleep(IDLE_SECONDS)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    idle_cpu = usage.ru_utime + usage.ru_stime - cpu0
    node.stop(grace=0.5)
    print(json.dumps({
        "jobs": n, "loaded": loaded, "start_to_ready_s": ready - t0, "election_to_ready_s": ready - elected[0],
        "rss_mib": rss, "peak_rss_mib": peak, "base_rss_mib": base_rss, "idle_cpu_s": idle_cpu,
    }))  # fmt: skip
    return 0


def measure_load(n: int, base: Path) -> dict[str, float]:
    data = base / f"load{n}"
    t0 = time.monotonic()
    seed_store(data, n)
    print(f"  setup: {n} jobs and {n} executions written in {time.monotonic() - t0:.1f}s")
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(data), str(n)],
        env=checkout.node_env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loaded"] == n, result
    return result


def main_load(n: int) -> int:
    print(f"command: python bench/scale_bench.py --load-jobs {n}")
    print(
        f"date:    {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc={os.cpu_count()}; Python {platform.python_version()}"
    )
    print(
        "setup:   one embedded node in a fresh subprocess on a SQLite store seeded directly; daily jobs, "
        f"none due during the measurement; idle window {IDLE_SECONDS:g}s"
    )
    base = Path(tempfile.mkdtemp(prefix="dcron-scale-"))
    try:
        r = measure_load(n, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(
        f"{'jobs':>7} {'start->ready s':>15} {'election->ready s':>18} {'rss MiB':>8} {'peak MiB':>9} {'idle cpu s':>11}"
    )
    print(
        f"{r['jobs']:>7} {r['start_to_ready_s']:>15.2f} {r['election_to_ready_s']:>18.2f} {r['rss_mib']:>8.1f} "
        f"{r['peak_rss_mib']:>9.1f} {r['idle_cpu_s']:>11.2f}"
    )
    print(f"(rss of the process before the node started: {r['base_rss_mib']:.1f} MiB)")
    return 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        return load_child(Path(sys.argv[2]), int(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--load-jobs", type=int, metavar="N", help="measure the leader's load of N jobs")
    args = parser.parse_args()
    if args.load_jobs:
        return main_load(args.load_jobs)
    print(f"command: python bench/scale_bench.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"date:    {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc={os.cpu_count()}; Python {platform.python_version()}"
    )
    print(
        f"setup:   one embedded dcrond; daily jobs, none due during the measurement; idle window {IDLE_SECONDS:g}s"
    )
    base = Path(tempfile.mkdtemp(prefix="dcron-scale-"))
    rows = []
    try:
        for n in sorted(args.sizes):
            print(f"[{n} jobs]")
            rows.append(measure(n, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    peer = rows[0]
    print()
    print(
        f"{'jobs':>7} {'register/s':>11} {'load s':>8} {'rss MiB':>8} {'idle cpu s':>11} {'list s':>8}  vs peer ({peer['jobs']} jobs)"
    )
    for r in rows:
        ratio = (
            f"load x{r['load_s'] / peer['load_s']:.1f}, rss x{r['rss_mib'] / peer['rss_mib']:.2f}, "
            f"idle cpu x{r['idle_cpu_s'] / max(peer['idle_cpu_s'], 1e-9):.2f}"
        )
        print(
            f"{r['jobs']:>7} {r['registration_per_s']:>11.0f} {r['load_s']:>8.2f} {r['rss_mib']:>8.1f} "
            f"{r['idle_cpu_s']:>11.2f} {r['list_s']:>8.2f}  {ratio}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
