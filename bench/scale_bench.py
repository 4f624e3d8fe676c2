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
- **list**: wall time of one ``LIST`` call (it computes each job's next fire time).

The smallest size is the peer the others are compared with.
"""

from __future__ import annotations

import argparse
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
            jobs = client.list()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    args = parser.parse_args()
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
