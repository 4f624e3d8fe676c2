"""dcron (one embedded ``dcrond``) against APScheduler 3.11 in the same run: burst and sustained load.

Run from the repository root (needs ``pip install -e '.[bench]'``, i.e. ``apscheduler>=3.11,<4``)::

    python bench/apscheduler_bench.py                          # about 7 minutes on 2 cores
    python bench/apscheduler_bench.py --burst 100,1000 --sustained-jobs 500 --duration 20

Every run of either scheduler is one ``sh`` process whose only command appends its own clock
(``date +%s.%N``) to a marker file named after the job, so both sides pay the same process cost
and are measured by the same clock:

- **dcron**: one ``dcrond`` (SQLite store, ``file://`` objects, file-lock election,
  ``--capacity``) in a temporary folder; jobs are registered with ``SCHEDULE_MANY``
  (``Client.schedule_many``), interpreter ``sh``, script ``echo $(date +%s.%N) $DCRON_FIRE_TIME >>
  "DIR/$DCRON_JOB"``.  The node is stopped before APScheduler runs, so they never share the cores.
- **APScheduler**: a ``BackgroundScheduler`` (memory job store, UTC) with a *thread* pool
  executor of ``--capacity`` workers; each job calls ``subprocess.run(["sh", "-c", "echo
  $(date +%s.%N) >> DIR/JOB"])``.  Job defaults: ``misfire_grace_time=None`` (a late run is
  never dropped: APScheduler's default of 1 s would drop runs instead of making them late),
  ``coalesce=False``, ``max_instances=1`` (the default; a run whose previous one still runs is
  skipped and counted).

Figures:

1. **burst**: N jobs all due at the same second (dcron: a 6-field expression ``S M H D Mo *``
   of an instant ``--lead`` seconds ahead, disabled once they ran; APScheduler: a ``date``
   trigger at such an instant).  Start lag = the script's clock - the due instant: p50 / p99 / max.
   For dcron the execution's ``started`` (the worker's clock just before it spawns ``sh``) is
   printed too.
2. **sustained**: J jobs every second (dcron ``* * * * * *``, APScheduler ``cron(second="*")``)
   for D seconds: runs whose fire time is in the window ``[T0, T0 + D)``, against J*D expected,
   and their lag (script clock - fire time; dcron gives the fire time in ``$DCRON_FIRE_TIME``,
   APScheduler in its ``EVENT_JOB_SUBMITTED`` events, paired in order with the job's stamps).

3. **bare**: no scheduler at all: a single-threaded ``python -I -S`` that starts the burst's N
   ``sh`` commands in a loop at the instant.  Its p99 is the floor of a burst on this machine (the
   processes' own CPU on these cores), printed beside as dcron / bare and APScheduler / bare.

``--work-dir`` places the temporary folders (default: the system's temporary folder): dcron
creates a file (the run's log) and a folder (its place in ``file://`` object storage) per run,
APScheduler nothing, so a file system slow to create files weighs on dcron alone (README, "Figures").

Ratios are dcron / APScheduler (below 1: dcron is faster).  Results go to
``bench/results/apscheduler_bench-TIMESTAMP.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import checkout  # before libdcron: puts this checkout's packages first on sys.path

from libdcron.client import Client
from libdcron.model import parse_instant

ROOT = Path(__file__).resolve().parent.parent


def say(text: str = "") -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not done after {timeout:.0f}s")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def fmt(s: dict[str, float]) -> str:
    if not s.get("n"):
        return "no runs"
    return f"p50 {s['p50']:.3f} s, p99 {s['p99']:.3f} s, max {s['max']:.3f} s (n={s['n']:.0f})"


def read_stamps(folder: Path) -> dict[str, list[list[str]]]:
    """Each marker file's lines, split: ``[clock]`` or ``[clock, fire_time]``."""
    out: dict[str, list[list[str]]] = {}
    for path in folder.iterdir():
        out[path.name] = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return out


def next_whole_second(ahead: float) -> datetime:
    return datetime.fromtimestamp(math.ceil(time.time() + ahead), UTC)


# ----------------------------------------------------------------------------------------------
# dcron


class Dcron:
    def __init__(self, base: Path, capacity: int) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.data = base / "dcron-data"
        self.log = base / "dcrond.log"
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.script = base / "stamp.sh"
        self.stamps_root = base / "dcron-stamps"
        env = checkout.node_env({k: v for k, v in os.environ.items() if not k.startswith("DCRON_")})
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "libdcron.daemon", "--data-dir", str(self.data), "--listen", self.endpoint,
                 "--node-id", "apsbench", "--capacity", str(capacity), "--log-level", "WARNING"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT, env=env,
            )  # fmt: skip
        # WARNING hides "leader loaded": wait for the keys and an answer to STATUS instead.
        wait_for(lambda: (self.data / "keys" / "client.key_secret").exists(), 30, "dcrond keys")
        self.client = Client(self.endpoint, timeout=60, data_dir=self.data)

        def leader() -> bool:
            try:
                return bool(self.client.status().get("is_leader"))
            except Exception:
                return False

        wait_for(leader, 30, "dcrond to lead")

    def stamp_dir(self, tag: str) -> tuple[Path, Path]:
        folder = self.stamps_root / tag
        folder.mkdir(parents=True)
        script = self.script.with_name(f"stamp-{tag}.sh")
        script.write_text(f'echo $(date +%s.%N) $DCRON_FIRE_TIME >> "{folder}/$DCRON_JOB"\n')
        return folder, script

    def idle(self) -> bool:
        st = self.client.status()
        return not st["running"] and not st["outbox"]

    def disable(self, names: list[str]) -> float:
        t = time.perf_counter()
        for name in names:
            self.client.disable(name)
        return time.perf_counter() - t

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def dcron_burst(dc: Dcron, n: int, lead: float) -> dict[str, Any]:
    tag = f"burst{n}"
    folder, script = dc.stamp_dir(tag)
    names = [f"{tag}-{i:05d}" for i in range(n)]
    due = next_whole_second(lead)
    expr = f"{due.second} {due.minute} {due.hour} {due.day} {due.month} *"
    t = time.perf_counter()
    reply = dc.client.schedule_many(
        {"name": name, "schedule": expr, "interpreter": "sh", "script": script} for name in names
    )
    reg_s = time.perf_counter() - t
    assert len(reply["created"]) == n and not reply["failed"], reply["failed"][:3]
    margin = due.timestamp() - time.time()
    if margin < 3:
        raise RuntimeError(f"only {margin:.1f}s left before the due instant; raise --lead")
    t_due = due.timestamp()
    time.sleep(max(0.0, t_due - 1.0 - time.time()))
    cpu0 = cpu_seconds(dc.proc.pid)
    wait_for(lambda: sum(1 for _ in folder.iterdir()) >= n, 120, f"dcron: {n} burst runs", 0.1)
    all_in = time.time() - t_due
    wait_for(dc.idle, 60, "dcron: runs to be recorded")
    cpu = cpu_seconds(dc.proc.pid) - cpu0
    lags = [float(lines[0][0]) - t_due for lines in read_stamps(folder).values() if lines]
    spawn: list[float] = []
    for name in names:
        runs = [x for x in dc.client.executions(name, limit=5) if x.get("started")]
        if runs:
            spawn.append(min(parse_instant(x["started"]).timestamp() for x in runs) - t_due)
    dis_s = dc.disable(names)
    return {
        "n": n,
        "expression": expr,
        "due": due.isoformat(),
        "register_s": reg_s,
        "disable_s": dis_s,
        "lag_s": summary(lags),
        "spawn_lag_s": summary(spawn),
        "all_stamped_after_due_s": all_in,
        "dcrond_cpu_s": cpu,
    }


def dcron_sustained(dc: Dcron, jobs: int, duration: int, warmup: float) -> dict[str, Any]:
    tag = f"sustained{jobs}"
    folder, script = dc.stamp_dir(tag)
    names = [f"{tag}-{i:05d}" for i in range(jobs)]
    t = time.perf_counter()
    reply = dc.client.schedule_many(
        {"name": name, "schedule": "* * * * * *", "interpreter": "sh", "script": script} for name in names
    )
    reg_s = time.perf_counter() - t
    assert len(reply["created"]) == jobs and not reply["failed"], reply["failed"][:3]
    t0 = next_whole_second(warmup).timestamp()
    t1 = t0 + duration
    time.sleep(max(0.0, t0 - time.time()))
    cpu0 = cpu_seconds(dc.proc.pid)
    time.sleep(max(0.0, t1 - time.time()))
    cpu = cpu_seconds(dc.proc.pid) - cpu0
    time.sleep(2.0)  # runs of the window's last seconds
    dis_s = dc.disable(names)
    wait_for(dc.idle, 60, "dcron: sustained runs to end")
    lags: list[float] = []
    per_job: dict[str, int] = {}
    for name, lines in read_stamps(folder).items():
        count = 0
        for clock, fire in lines:
            f = parse_instant(fire).timestamp()
            if t0 <= f < t1:
                count += 1
                lags.append(float(clock) - f)
        per_job[name] = count
    runs = sum(per_job.values())
    return {
        "jobs": jobs,
        "duration_s": duration,
        "window": [datetime.fromtimestamp(t0, UTC).isoformat(), datetime.fromtimestamp(t1, UTC).isoformat()],
        "register_s": reg_s,
        "disable_s": dis_s,
        "expected": jobs * duration,
        "runs": runs,
        "jobs_short": sum(1 for name in names if per_job.get(name, 0) < duration),
        "lag_s": summary(lags),
        "dcrond_cpu_s": cpu,
    }


# ----------------------------------------------------------------------------------------------
# APScheduler


class Aps:
    def __init__(self, base: Path, capacity: int) -> None:
        from apscheduler.events import (
            EVENT_JOB_ERROR,
            EVENT_JOB_MAX_INSTANCES,
            EVENT_JOB_MISSED,
            EVENT_JOB_SUBMITTED,
        )
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.stamps_root = base / "aps-stamps"
        self.submitted: dict[str, list[float]] = defaultdict(list)
        self.skipped: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        self.sched = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=capacity)},
            job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1},
            timezone=UTC,
        )
        codes = {
            EVENT_JOB_MAX_INSTANCES: "max_instances",
            EVENT_JOB_MISSED: "missed",
            EVENT_JOB_ERROR: "error",
        }

        def listen(event: Any) -> None:
            with self.lock:
                if event.code == EVENT_JOB_SUBMITTED:
                    self.submitted[event.job_id].extend(t.timestamp() for t in event.scheduled_run_times)
                else:
                    self.skipped[codes[event.code]] += 1

        self.sched.add_listener(
            listen, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED | EVENT_JOB_ERROR
        )
        self.sched.start()

    def stamp_dir(self, tag: str) -> Path:
        folder = self.stamps_root / tag
        folder.mkdir(parents=True)
        with self.lock:
            self.submitted.clear()
            self.skipped.clear()
        return folder

    def stop(self) -> None:
        if self.sched.running:
            self.sched.shutdown(wait=True)


#: What each run's ``sh`` does: ``clock`` appends its own clock (``date``, a second process);
#: ``fire`` only appends a line with the shell's builtin ``echo`` (the scheduler's start instant,
#: taken just before the spawn as dcron's worker takes ``started``, is the clock then).
SCRIPT = "clock"
#: ``fire``: each marker file's start instants, in order.
STARTED: dict[str, list[float]] = defaultdict(list)


def run_sh(path: str) -> None:
    if SCRIPT == "fire":
        STARTED[path].append(time.time())
        subprocess.run(["sh", "-c", f'echo x >> "{path}"'], check=False)
        return
    subprocess.run(["sh", "-c", f'echo $(date +%s.%N) >> "{path}"'], check=False)


def aps_burst(aps: Aps, n: int, lead: float) -> dict[str, Any]:
    tag = f"burst{n}"
    folder = aps.stamp_dir(tag)
    due = next_whole_second(lead)
    t = time.perf_counter()
    for i in range(n):
        name = f"{tag}-{i:05d}"
        aps.sched.add_job(run_sh, "date", run_date=due, args=[str(folder / name)], id=name)
    reg_s = time.perf_counter() - t
    t_due = due.timestamp()
    time.sleep(max(0.0, t_due - 1.0 - time.time()))
    cpu0 = self_cpu()
    wait_for(lambda: sum(1 for _ in folder.iterdir()) >= n, 120, f"APScheduler: {n} burst runs", 0.1)
    all_in = time.time() - t_due
    cpu = self_cpu() - cpu0  # the bench process is the scheduler (its waiting loop costs little)
    lags = [float(lines[0][0]) - t_due for lines in read_stamps(folder).values() if lines]
    return {
        "n": n,
        "due": due.isoformat(),
        "register_s": reg_s,
        "lag_s": summary(lags),
        "all_stamped_after_due_s": all_in,
        "skipped": dict(aps.skipped),
        "scheduler_cpu_s": cpu,
    }


def aps_sustained(aps: Aps, jobs: int, duration: int, warmup: float) -> dict[str, Any]:
    tag = f"sustained{jobs}"
    folder = aps.stamp_dir(tag)
    names = [f"{tag}-{i:05d}" for i in range(jobs)]
    t = time.perf_counter()
    for name in names:
        aps.sched.add_job(run_sh, "cron", second="*", args=[str(folder / name)], id=name)
    reg_s = time.perf_counter() - t
    t0 = next_whole_second(warmup).timestamp()
    t1 = t0 + duration
    time.sleep(max(0.0, t0 - time.time()))
    cpu0 = self_cpu()
    time.sleep(max(0.0, t1 - time.time()))
    cpu = self_cpu() - cpu0
    time.sleep(2.0)
    for name in names:
        aps.sched.remove_job(name)
    aps.stop()  # waits for the submitted runs to end
    stamps = read_stamps(folder)
    lags: list[float] = []
    per_job: dict[str, int] = {}
    unpaired = 0
    for name in names:
        fired = aps.submitted.get(name, [])
        lines = stamps.get(name, [])
        if SCRIPT == "fire":  # one builtin-echo line per run; the start instants are the clocks
            clocks = STARTED.get(str(folder / name), [])[: len(lines)]
        else:
            clocks = [float(line[0]) for line in lines]
        unpaired += abs(len(fired) - len(clocks))
        count = 0
        for f, clock in zip(fired, clocks, strict=False):  # max_instances=1: one job's runs in order
            if t0 <= f < t1:
                count += 1
                lags.append(clock - f)
        per_job[name] = count
    return {
        "jobs": jobs,
        "duration_s": duration,
        "window": [datetime.fromtimestamp(t0, UTC).isoformat(), datetime.fromtimestamp(t1, UTC).isoformat()],
        "register_s": reg_s,
        "expected": jobs * duration,
        "runs": sum(per_job.values()),
        "jobs_short": sum(1 for name in names if per_job.get(name, 0) < duration),
        "lag_s": summary(lags),
        "skipped": dict(aps.skipped),
        "unpaired_stamps": unpaired,
        "scheduler_cpu_s": cpu,
    }


# ----------------------------------------------------------------------------------------------
# bare: no scheduler at all, the floor of a burst on this machine

#: A single-threaded ``python -I -S`` that sleeps until the instant, then starts the N commands
#: one after the other (``subprocess.Popen``: a vfork and exec each) and waits for them.
BARE = """
import subprocess, sys, time
at, folder, n = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cmds = [["sh", "-c", f'echo $(date +%s.%N) >> "{folder}/j{i:05d}"'] for i in range(n)]
time.sleep(max(0.0, at - time.time()))
for p in [subprocess.Popen(c) for c in cmds]:
    p.wait()
"""


def bare_burst(base: Path, n: int, lead: float) -> dict[str, Any]:
    """The same N ``sh`` commands started at the instant by a process that does nothing else:
    what any scheduler's burst costs at least here (the processes' own CPU on these cores)."""
    folder = base / f"bare{n}"
    folder.mkdir(parents=True)
    due = next_whole_second(lead)
    t_due = due.timestamp()
    subprocess.run(
        [sys.executable, "-I", "-S", "-c", BARE, str(t_due), str(folder), str(n)],
        check=True,
        timeout=lead + 120,
    )
    all_in = time.time() - t_due
    lags = [float(lines[0][0]) - t_due for lines in read_stamps(folder).values() if lines]
    return {"n": n, "due": due.isoformat(), "lag_s": summary(lags), "all_stamped_after_due_s": all_in}


# ----------------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst", default="100,1000", help="burst sizes, comma-separated [100,1000]")
    parser.add_argument("--sustained-jobs", type=int, default=200, help="jobs every second [200; try 500]")
    parser.add_argument("--duration", type=int, default=20, help="sustained window, seconds [20]")
    parser.add_argument("--capacity", type=int, default=2000, help="dcrond --capacity = APScheduler threads")
    parser.add_argument("--lead", type=float, default=10.0, help="burst due instant, seconds ahead [10]")
    parser.add_argument("--rounds", type=int, default=3, help="burst rounds, the peers in turn [3]")
    parser.add_argument("--warmup", type=float, default=3.0, help="sustained: seconds before the window")
    parser.add_argument(
        "--work-dir", type=Path, default=None,
        help="where the temporary folders go (default: the system's, usually /tmp); see README "
        "'Figures' on file creation costs",
    )  # fmt: skip
    args = parser.parse_args()
    bursts = [int(x) for x in args.burst.split(",") if x.strip()]
    command = " ".join(["python", "bench/apscheduler_bench.py", *sys.argv[1:]])
    started = datetime.now(UTC)
    versions = {
        "python": platform.python_version(),
        "dcron": version("dcron"),
        "apscheduler": version("apscheduler"),
        "sh": "dash" if Path("/bin/sh").resolve().name == "dash" else Path("/bin/sh").resolve().name,
    }
    results: dict[str, Any] = {
        "command": command,
        "date": started.isoformat(timespec="seconds"),
        "host": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "versions": versions,
        "settings": {
            "capacity": args.capacity,
            "dcron": "one embedded dcrond (SQLite, file:// objects, file-lock election), SCHEDULE_MANY",
            "apscheduler": f"BackgroundScheduler, MemoryJobStore, ThreadPoolExecutor(max_workers={args.capacity}), "
            "misfire_grace_time=None, coalesce=False, max_instances=1",
            "lag": "script's own `date +%s.%N` - due instant (same clock, same sh command on both sides)",
            "bare": "no scheduler: one python -I -S starting the burst's sh commands in a loop at the instant",
        },
        "dcron": {"burst": [], "sustained": None},
        "apscheduler": {"burst": [], "sustained": None},
        "bare": {"burst": []},
    }
    say(f"command: {command}")
    say(f"date:    {started:%Y-%m-%d %H:%M:%S} UTC; host {results['host']}")
    say("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    say(f"setup:   dcron {results['settings']['dcron']}, --capacity {args.capacity}")
    say(f"         APScheduler {results['settings']['apscheduler']}")
    say(f"lag:     {results['settings']['lag']}")

    with tempfile.TemporaryDirectory(prefix="dcron-aps-bench-", dir=args.work_dir) as tmp:
        base = Path(tmp)
        # Bursts in rounds, the three peers in turn within each: the machine's speed drifts
        # over minutes (shared hosts), and the medians over rounds are what the summary compares.
        for rnd in range(1, args.rounds + 1):
            at = base / f"round{rnd}"
            say(f"\n[round {rnd}/{args.rounds}: dcron]")
            dc = Dcron(at, args.capacity)
            try:
                for n in bursts:
                    r = dcron_burst(dc, n, args.lead) | {"round": rnd}
                    results["dcron"]["burst"].append(r)
                    say(f"  burst {n}: lag {fmt(r['lag_s'])}; worker spawn (`started`) {fmt(r['spawn_lag_s'])}; "
                        f"SCHEDULE_MANY {r['register_s']:.2f} s, dcrond CPU {r['dcrond_cpu_s']:.1f} s")  # fmt: skip
            finally:
                dc.stop()
            say(f"[round {rnd}/{args.rounds}: APScheduler]")
            for n in bursts:
                aps = Aps(at / f"aps-b{n}", args.capacity)
                try:
                    r = aps_burst(aps, n, min(args.lead, 5.0) if n <= 100 else min(args.lead, 8.0)) | {
                        "round": rnd
                    }
                finally:
                    aps.stop()
                results["apscheduler"]["burst"].append(r)
                say(f"  burst {n}: lag {fmt(r['lag_s'])}; skipped {r['skipped'] or 0}; "
                    f"scheduler process CPU {r['scheduler_cpu_s']:.1f} s")  # fmt: skip
            say(f"[round {rnd}/{args.rounds}: bare, no scheduler]")
            for n in bursts:
                r = bare_burst(at, n, 3.0) | {"round": rnd}
                results["bare"]["burst"].append(r)
                say(f"  burst {n}: lag {fmt(r['lag_s'])}")
        say("\n[sustained: dcron]")
        dc = Dcron(base / "sustained", args.capacity)
        try:
            r = dcron_sustained(dc, args.sustained_jobs, args.duration, args.warmup)
            results["dcron"]["sustained"] = r
            say(f"  sustained {args.sustained_jobs} jobs x {args.duration} s: {r['runs']} / {r['expected']} runs, "
                f"lag {fmt(r['lag_s'])}; dcrond CPU {r['dcrond_cpu_s']:.1f} s in the window")  # fmt: skip
        finally:
            dc.stop()
        say("[sustained: APScheduler]")
        aps = Aps(base / "aps-s", args.capacity)
        try:
            r = aps_sustained(aps, args.sustained_jobs, args.duration, args.warmup)
        finally:
            aps.stop()
        results["apscheduler"]["sustained"] = r
        say(f"  sustained {args.sustained_jobs} jobs x {args.duration} s: {r['runs']} / {r['expected']} runs, "
            f"lag {fmt(r['lag_s'])}; skipped {r['skipped'] or 0}; unpaired {r['unpaired_stamps']}; "
            f"scheduler CPU {r['scheduler_cpu_s']:.1f} s in the window")  # fmt: skip

    results["work_dir"] = str(args.work_dir or tempfile.gettempdir())
    rows: list[tuple[str, str, str, str]] = []
    ratios: dict[str, float | list[float | None] | None] = {}

    def row(label: str, key: str, d: float | None, a: float | None, unit: str = "s") -> None:
        q = ratio(d, a)
        ratios[key] = q
        f = (
            (lambda v: "-" if v is None else f"{v:.3f} {unit}")
            if unit == "s"
            else (lambda v: "-" if v is None else f"{v:.0f}")
        )
        rows.append((label, f(d), f(a), "-" if q is None else f"{q:.2f}"))

    def median_of(peer: str, n: int, p: str) -> float | None:
        values = [b["lag_s"][p] for b in results[peer]["burst"] if b["n"] == n and p in b["lag_s"]]
        return statistics.median(values) if values else None

    bare_rows: list[str] = []
    for n in bursts:
        for p in ("p50", "p99", "max"):
            row(f"burst {n}: start lag {p}, median of {args.rounds}", f"burst{n}_{p}",
                median_of("dcron", n, p), median_of("apscheduler", n, p))  # fmt: skip
        per_round = [
            ratio(d["lag_s"].get("p99"), a["lag_s"].get("p99"))
            for d, a in zip(
                [b for b in results["dcron"]["burst"] if b["n"] == n],
                [b for b in results["apscheduler"]["burst"] if b["n"] == n],
                strict=True,
            )
        ]
        ratios[f"burst{n}_p99_per_round"] = per_round
        floor = median_of("bare", n, "p99")
        q_d, q_a = (
            ratio(median_of("dcron", n, "p99"), floor),
            ratio(median_of("apscheduler", n, "p99"), floor),
        )
        ratios[f"burst{n}_p99_dcron_over_bare"], ratios[f"burst{n}_p99_aps_over_bare"] = q_d, q_a
        rounds = ", ".join("-" if q is None else f"{q:.2f}" for q in per_round)
        if floor is not None and q_d is not None and q_a is not None:
            bare_rows.append(
                f"burst {n}: p99 dcron/APS by round {rounds}; bare (no scheduler) p99 {floor:.3f} s, "
                f"dcron {q_d:.2f}x it, APScheduler {q_a:.2f}x it"
            )
    d, a = results["dcron"]["sustained"], results["apscheduler"]["sustained"]
    tag = f"sustained {d['jobs']}x{d['duration_s']}s"
    row(f"{tag}: runs (expected {d['expected']})", "sustained_runs", d["runs"], a["runs"], unit="n")
    for p in ("p50", "p99"):
        row(f"{tag}: lag {p}", f"sustained_{p}", d["lag_s"].get(p), a["lag_s"].get(p))
    results["ratios_dcron_over_apscheduler"] = ratios
    widths = [
        max(len(r[i]) for r in [*rows, ("figure", "dcron", "APScheduler 3.11", "dcron/APS")])
        for i in range(4)
    ]
    say(f"\nsummary ({command}, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cpus):")
    for r in [("figure", "dcron", "APScheduler 3.11", "dcron/APS"), *rows]:
        say(
            "  "
            + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )

    for line in bare_rows:
        say("  " + line)

    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"apscheduler_bench-{started:%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    say(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
