"""Sustained throughput of three ``dcrond`` nodes (embedded and cluster mode) beside one node,
APScheduler 3.11 and the machine's bare ``sh`` spawn rate, in the same run.

Run from the repository root (needs ``pip install -e '.[bench]'`` and scripts/install-services.sh)::

    python bench/throughput_bench.py                              # 300 jobs x 20 s, every mode
    python bench/throughput_bench.py --jobs 300,600,1000 --duration 20 --modes embedded,cluster

Every run is one ``sh`` process.  ``--script fire`` (the default, the issue's "empty ``sh``
script"): it only appends ``$DCRON_FIRE_TIME`` to a marker file named after the job with the
shell's builtin ``echo`` (APScheduler's runs append a line the same way), and lag is the
scheduler's start instant (dcron: the execution's ``started``, taken by the worker just before the
spawn; APScheduler: taken in its thread just before ``subprocess.run``) minus the fire time.
``--script clock``: the script appends its own clock too (``date +%s.%N``: a second process per
run), and lag is that clock minus the fire time (as bench/apscheduler_bench.py measures).

J jobs ``* * * * * *`` (registered with one ``SCHEDULE_MANY``) run for a window ``[T0, T0 + D)``;
afterwards they are disabled and the nodes are waited for until idle (no ``running``, ``outbox``
0).  Figures: distinct (job, fire time) pairs stamped with a fire time in the window against J*D,
**duplicates** (a pair stamped more than once: must be 0), lag (script clock - fire time, nearest
rank p50/p99/max), CPU seconds of each scheduler process (own, its spawner helper's, and the
reaped scripts') and the whole machine's busy share in the window (sampled from /proc every 0.25 s),
and a **store check**: for every job, ``Client.executions`` must hold exactly one execution per
fire time of the window, attempt 1, ``succeeded``.  ``background``: the machine's busy share in the 3 s
before each registration (the nodes up and idle, and whatever else runs on this shared machine).
Results: bench/results/throughput_bench-TIMESTAMP.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import apscheduler_bench as aps
import cluster_bench as cb
import file_creation as fc

from libdcron.client import Client
from libdcron.errors import UnavailableError
from libdcron.model import parse_instant
from libdcron.transport.keys import ensure_local_keys

say = cb.say
#: The command of each run, by --script (``{folder}``: the marker folder).
SCRIPTS = {
    "fire": 'echo "$DCRON_FIRE_TIME" >> "{folder}/$DCRON_JOB"\n',
    "clock": 'echo $(date +%s.%N) $DCRON_FIRE_TIME >> "{folder}/$DCRON_JOB"\n',
}
SCRIPT = "fire"


def tree_cpu(pid: int) -> tuple[float, float, float]:
    """CPU seconds of a dcrond: its own, its helper processes' (the spawner), and the scripts'
    (the reaped children of either)."""
    own, scripts = cb.cpu_seconds(pid)
    helpers = 0.0
    try:
        kids = [
            int(x) for t in Path(f"/proc/{pid}/task").iterdir() for x in (t / "children").read_text().split()
        ]
    except OSError:
        kids = []
    for kid in kids:
        k_own, k_children = cb.cpu_seconds(kid)
        if k_own == k_own:  # not NaN: still there
            helpers, scripts = helpers + k_own, scripts + k_children
    return own, helpers, scripts


class Sampler(threading.Thread):
    """(time, machine ticks, CPU of watched pids and of this process) every ``interval`` seconds."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.samples: list[tuple[float, tuple[int, int], dict[str, tuple[float, float]]]] = []
        self.done = threading.Event()

    def sample(self) -> None:
        t = os.times()
        cpu = {name: tree_cpu(pid) for name, pid in self.pids.items()}
        cpu["bench"] = (t.user + t.system, 0.0, t.children_user + t.children_system)
        self.samples.append((time.time(), cb.machine_ticks(), cpu))

    def run(self) -> None:
        self.sample()
        while not self.done.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.sample()

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        a = min(self.samples, key=lambda s: abs(s[0] - t0))
        b = min(self.samples, key=lambda s: abs(s[0] - t1))
        total = b[1][1] - a[1][1]
        cpu = {k: dict(zip(("self", "helpers", "scripts"), (y - x for x, y in zip(v, b[2][k], strict=True)), strict=True))
               for k, v in a[2].items()}  # fmt: skip
        return {
            "sampled_s": b[0] - a[0],
            "machine_busy": (b[1][0] - a[1][0]) / total if total else None,
            "cpu_s": cpu,
        }


def background_busy(seconds: float = 3.0) -> float:
    a = cb.machine_ticks()
    time.sleep(seconds)
    b = cb.machine_ticks()
    return (b[0] - a[0]) / max(1, b[1] - a[1])


class Nodes(cb.Dcron):
    """cluster_bench's nodes, with clients that use the keys of ``keys_home``/keys."""

    keys_home: Path | None = None

    def client(self, node: cb.Node, timeout: float = 10.0) -> Client:
        return Client(node.endpoint, timeout=timeout, data_dir=self.keys_home)

    def any_client(self, timeout: float = 10.0) -> Client:
        return Client([n.endpoint for n in self.alive()], timeout=timeout, data_dir=self.keys_home)

    def idle(self) -> bool:
        for node in self.alive():
            st = self.status(node, timeout=10)
            if st is None or st["running"] or st["outbox"]:
                return False
        return True


def start_nodes(mode: str, procs: cb.Processes, base: Path, services: dict[str, Any]) -> Nodes:
    root = base / mode
    root.mkdir()
    keys_home = root / ("keys-home" if mode == "cluster" else "shared")
    ensure_local_keys(keys_home / "keys")  # before the nodes, so that clients can be made at once
    if mode == "cluster":
        zk, couch, objects = services["zk"], services["couch"], base / "objects"
        objects.mkdir(exist_ok=True)
        chroot, prefix = f"/dcron-tp-{uuid.uuid4().hex[:8]}", f"tp{uuid.uuid4().hex[:8]}"

        def node_args(node_id: str) -> list[str]:
            return ["--data-dir", str(root / "data" / node_id), "--keys-dir", str(keys_home / "keys"),
                    "--election", f"zk://127.0.0.1:{zk}{chroot}", "--store", f"http://127.0.0.1:{couch}/{prefix}",
                    "--objects", f"file://{objects}", "-o", f"session_timeout={cb.SESSION_TIMEOUT:g}"]  # fmt: skip
    else:

        def node_args(node_id: str) -> list[str]:
            return ["--data-dir", str(keys_home)]

    cb.NODES = 1 if mode == "single" else 3
    dc = Nodes(mode, root, procs, node_args)
    dc.keys_home = keys_home
    t = time.monotonic()
    dc.start()
    say(f"\n[{mode}] {cb.NODES} dcrond up in {time.monotonic() - t:.1f} s")
    return dc


def stamps_in_window(folder: Path, t0: float, t1: float) -> tuple[Counter[tuple[str, float]], list[float]]:
    seen: Counter[tuple[str, float]] = Counter()
    lags: list[float] = []
    for name, lines in aps.read_stamps(folder).items():
        for line in lines:
            if len(line) not in (1, 2):
                continue
            f = parse_instant(line[-1]).timestamp()
            if t0 <= f < t1:
                seen[name, f] += 1
                if seen[name, f] == 1 and len(line) == 2:
                    lags.append(float(line[0]) - f)
    return seen, lags


def store_check(dc: Nodes, names: list[str], t0: float, t1: float, duration: int) -> dict[str, Any]:
    """Every job's executions with a fire time in the window, read back through the API."""
    rows: dict[str, list[dict[str, Any]]] = {}

    def executions(c: Client, name: str, page: int) -> list[dict[str, Any]]:
        for attempt in range(5):  # a store still busy with the load's writes may time out a read
            try:
                return c.executions(name, limit=200, page=page)
            except UnavailableError as exc:
                if attempt == 4:
                    raise
                say(f"    (reading {name}'s executions: {exc}; again in 5 s)")
                time.sleep(5.0)
        raise AssertionError("unreachable")

    def read(c: Client, name: str) -> None:
        got: list[dict[str, Any]] = []
        for page in range(1, 11):
            batch = executions(c, name, page)
            got += batch
            if len(batch) < 200 or min(parse_instant(x["fire_time"]).timestamp() for x in batch) < t0:
                break
        rows[name] = [x for x in got if t0 <= parse_instant(x["fire_time"]).timestamp() < t1]

    cb._in_parallel(dc, names, read)
    per_fire: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for name, xs in rows.items():
        for x in xs:
            per_fire[name, x["fire_time"]].append(x)
    good = sum(
        1
        for xs in per_fire.values()
        if len(xs) == 1 and xs[0]["attempt"] == 1 and xs[0]["status"] == "succeeded"
    )
    started = [
        parse_instant(xs[0]["started"]).timestamp() - parse_instant(xs[0]["fire_time"]).timestamp()
        for xs in per_fire.values()
        if xs[0].get("started")
    ]
    ended = [
        parse_instant(xs[0]["ended"]).timestamp() - parse_instant(xs[0]["started"]).timestamp()
        for xs in per_fire.values()
        if xs[0].get("started") and xs[0].get("ended")
    ]
    return {
        "jobs": len(names),
        "expected": len(names) * duration,
        "start_to_end_s": aps.summary(ended),
        "fire_times": len(per_fire),
        "exactly_one_succeeded": good,
        "with_more_than_one": sum(1 for xs in per_fire.values() if len(xs) > 1),
        "statuses": dict(Counter(x["status"] for xs in rows.values() for x in xs)),
        "per_node": dict(sorted(Counter(x["node"] for xs in rows.values() for x in xs).items())),
        "start_lag_s": aps.summary(started),
    }


def dcron_sustained(dc: Nodes, jobs: int, duration: int, warmup: float) -> dict[str, Any]:
    background = background_busy()
    tag = f"{dc.mode}{jobs}x{uuid.uuid4().hex[:4]}"
    folder = dc.root / f"stamps-{tag}"
    folder.mkdir()
    script = dc.root / f"stamp-{tag}.sh"
    script.write_text(SCRIPTS[SCRIPT].format(folder=folder))
    names = [f"{tag}-{i:05d}" for i in range(jobs)]
    with dc.any_client(timeout=120) as c:
        t = time.perf_counter()
        reply = c.schedule_many(
            {"name": n, "schedule": "* * * * * *", "interpreter": "sh", "script": script} for n in names
        )
        reg_s = time.perf_counter() - t
    assert len(reply["created"]) == jobs and not reply["failed"], reply["failed"][:3]
    sampler = Sampler({n.node_id: n.proc.pid for n in dc.alive()})
    sampler.start()
    t0 = aps.next_whole_second(warmup).timestamp()
    t1 = t0 + duration
    try:
        time.sleep(max(0.0, t1 + 2.0 - time.time()))  # + runs of the window's last seconds
        dis_s = cb._in_parallel(dc, names, lambda c, name: c.disable(name))
    finally:
        sampler.stop()
    cb.wait_for(dc.idle, 180, f"{dc.mode}: nodes idle", interval=0.5)
    seen, lags = stamps_in_window(folder, t0, t1)
    win = sampler.window(t0, t1)
    per_second = Counter(f for _, f in seen)
    r = {
        "jobs": jobs, "duration_s": duration, "expected": jobs * duration,
        "window": [datetime.fromtimestamp(t0, UTC).isoformat(), datetime.fromtimestamp(t1, UTC).isoformat()],
        "register_s": reg_s, "disable_s": dis_s,
        "runs": len(seen), "runs_per_s": len(seen) / duration,
        "duplicates": sum(k - 1 for k in seen.values() if k > 1),
        "jobs_short": sum(1 for n in names if sum(1 for f in range(int(t0), int(t1)) if (n, float(f)) in seen) < duration),
        "seconds_short": sum(1 for f in range(int(t0), int(t1)) if per_second.get(float(f), 0) < jobs),
        "machine_busy": win["machine_busy"], "background_busy": background, "sampled_s": win["sampled_s"],
        "cpu_s": {k: v for k, v in win["cpu_s"].items() if k != "bench"},
        "loadavg_after": os.getloadavg(),
        "store_check": store_check(dc, names, t0, t1, duration),
    }  # fmt: skip
    r["script_lag_s"] = aps.summary(lags)
    r["lag_s"] = r["script_lag_s"] if SCRIPT == "clock" else r["store_check"]["start_lag_s"]
    report(dc.mode, r)
    return r


def aps_sustained(base: Path, jobs: int, duration: int, warmup: float, capacity: int) -> dict[str, Any]:
    background = background_busy()
    sched = aps.Aps(base / f"aps{jobs}", capacity)
    sampler = Sampler({})
    sampler.start()
    try:
        r = aps.aps_sustained(sched, jobs, duration, warmup)
    finally:
        sched.stop()
        sampler.stop()
    t0, t1 = (datetime.fromisoformat(x).timestamp() for x in r["window"])
    dups = 0
    for fired in sched.submitted.values():
        dups += sum(k - 1 for k in Counter(f for f in fired if t0 <= f < t1).values() if k > 1)
    win = sampler.window(t0, t1)
    r.update(duplicates=dups, runs_per_s=r["runs"] / duration, machine_busy=win["machine_busy"],
             background_busy=background, cpu_s={"bench process": win["cpu_s"]["bench"]},
             loadavg_after=os.getloadavg())  # fmt: skip
    report("apscheduler", r)
    return r


def file_creation(base: Path, files: int = 2000) -> dict[str, Any]:
    """What creating a file costs in the work folder (dcron makes one a run, its log): on ext4
    up to 30 times more in the minutes after many files were deleted there (README, *Files*).
    The files stay until the end: deleting them now would slow the runs' own."""
    folder = base / "create-probe"
    folder.mkdir()
    cpu, wall = fc.make([folder], files, 1, "probe")
    r = {"files": files, "cpu_ms_per_file": cpu / files * 1000, "wall_ms_per_file": wall / files * 1000}
    say(f"files:   creating {files} empty files in {base.parent}: {r['cpu_ms_per_file']:.3f} ms CPU "
        f"({r['wall_ms_per_file']:.3f} ms wall) a file")  # fmt: skip
    return r


def spawn_ceiling(base: Path, threads: int, seconds: float) -> dict[str, Any]:
    background = background_busy()
    folder = base / "spawn"
    folder.mkdir()
    stop_at = time.monotonic() + seconds

    def work(i: int) -> None:
        cmd = ["sh", "-c", SCRIPTS[SCRIPT].format(folder=folder).replace("$DCRON_JOB", f"t{i}").replace(
            '"$DCRON_FIRE_TIME"', "x").replace("$DCRON_FIRE_TIME", "x")]  # fmt: skip
        while time.monotonic() < stop_at:
            subprocess.run(cmd, check=False)

    sampler = Sampler({})
    sampler.start()
    t0 = time.time()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    t1 = time.time()
    sampler.stop()
    runs = sum(len(p.read_text().splitlines()) for p in folder.iterdir())
    win = sampler.window(t0, t1)
    r = {"threads": threads, "seconds": t1 - t0, "runs": runs, "runs_per_s": runs / (t1 - t0),
         "machine_busy": win["machine_busy"], "background_busy": background,
         "cpu_s": {"bench process": win["cpu_s"]["bench"]}}  # fmt: skip
    say(f"\n[spawn ceiling] {threads} threads x {r['seconds']:.1f} s: {runs} sh runs = {r['runs_per_s']:.0f}/s, "
        f"machine {r['machine_busy']:.0%} busy (background before: {background:.0%})")  # fmt: skip
    return r


def cpu_text(cpu: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{k} {v['self']:.1f}+{v['helpers']:.1f}+{v['scripts']:.1f}" for k, v in cpu.items())


def report(mode: str, r: dict[str, Any]) -> None:
    say(f"  {mode} {r['jobs']} jobs x {r['duration_s']} s: {r['runs']} / {r['expected']} runs "
        f"({r['runs_per_s']:.0f}/s), duplicates {r['duplicates']}, lag {aps.fmt(r['lag_s'])}")  # fmt: skip
    say(f"    CPU s in the window (own+helpers+scripts): {cpu_text(r['cpu_s'])}; machine {r['machine_busy']:.0%} busy "
        f"(background before: {r['background_busy']:.0%}); load average {r['loadavg_after'][0]:.1f}")  # fmt: skip
    if "store_check" in r:
        s = r["store_check"]
        say(f"    store check ({s['jobs']} jobs): {s['exactly_one_succeeded']} / {s['expected']} fire times with exactly "
            f"one succeeded attempt-1 execution; {s['with_more_than_one']} with more; statuses {s['statuses']}; "
            f"per node {s['per_node']}; started to ended {aps.fmt(s['start_to_end_s'])}; jobs short {r['jobs_short']}, seconds short {r['seconds_short']}; "
            f"SCHEDULE_MANY {r['register_s']:.1f} s, disable {r['disable_s']:.1f} s")  # fmt: skip
    else:
        say(
            f"    skipped {r['skipped'] or 0}, unpaired stamps {r['unpaired_stamps']}, jobs short {r['jobs_short']}"
        )


def table(results: dict[str, Any]) -> list[str]:
    rows = [("mode", "jobs", "runs/expected", "runs/s", "dup", "lag p50", "lag p99", "lag max",
             "sched CPU s", "scripts CPU s", "machine busy", "store ok")]  # fmt: skip
    sp = results.get("spawn_ceiling")
    if sp:
        cpu = sp["cpu_s"]["bench process"]
        rows.append((f"bare spawn, {sp['threads']} threads", "-", f"{sp['runs']} in {sp['seconds']:.0f} s",
                     f"{sp['runs_per_s']:.0f}", "-", "-", "-", "-", f"{cpu['self']:.1f}", f"{cpu['scripts']:.1f}",
                     f"{sp['machine_busy']:.0%}", "-"))  # fmt: skip
    for mode, by_jobs in results["sustained"].items():
        for r in by_jobs.values():
            lag = r["lag_s"]
            own = sum(v["self"] + v["helpers"] for v in r["cpu_s"].values())
            kids = sum(v["scripts"] for v in r["cpu_s"].values())
            s = r.get("store_check")
            rows.append((mode, str(r["jobs"]), f"{r['runs']}/{r['expected']}", f"{r['runs_per_s']:.0f}",
                         str(r["duplicates"]), *(f"{lag[p]:.3f}" if lag.get("n") else "-" for p in ("p50", "p99", "max")),
                         f"{own:.1f}", f"{kids:.1f}", f"{r['machine_busy']:.0%}",
                         f"{s['exactly_one_succeeded']}/{s['expected']}" if s else "-"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="300", help="job counts, comma-separated [300]")
    parser.add_argument("--duration", type=int, default=20, help="window, seconds [20]")
    parser.add_argument("--modes", default="single,embedded,cluster,apscheduler", help="[all four]")
    parser.add_argument("--capacity", type=int, default=2000, help="dcrond --capacity = APScheduler threads")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds from registration to the window [5]"
    )
    parser.add_argument(
        "--spawn-threads", type=int, default=8, help="bare spawn ceiling threads (0: skip) [8]"
    )
    parser.add_argument("--spawn-seconds", type=float, default=5.0, help="bare spawn ceiling seconds [5]")
    parser.add_argument(
        "--script", choices=sorted(SCRIPTS), default="fire",
        help="fire: builtin echo only, lag = start instant (default); clock: + date, lag = script clock",
    )  # fmt: skip
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/*.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    parser.add_argument(
        "--work-dir", type=Path, default=None,
        help="where the temporary folder goes (default: the system's, usually /tmp); see README 'Figures'",
    )  # fmt: skip
    args = parser.parse_args()
    sizes = [int(x) for x in args.jobs.split(",") if x.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    cb.CAPACITY = args.capacity
    global SCRIPT
    SCRIPT = aps.SCRIPT = args.script
    started, load_start = datetime.now(UTC), os.getloadavg()
    command = shlex.join(["python3", "bench/throughput_bench.py", *sys.argv[1:]])
    info = {**cb.machine(), "apscheduler": version("apscheduler"), "sh": Path("/bin/sh").resolve().name}
    say(f"command: {command}")
    say(
        f"date:    {started:%Y-%m-%d %H:%M:%S} UTC; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    say("machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "platform"))
    say(
        f"setup:   dcrond --capacity {args.capacity} --log-level WARNING; jobs `* * * * * *`, sh; "
        f"window {args.duration} s; script {args.script}: {SCRIPTS[args.script].strip()}"
    )

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, cb._raise_interrupted)
    signal.signal(signal.SIGHUP, cb._raise_interrupted)
    procs = cb.Processes()
    base = Path(tempfile.mkdtemp(prefix="dcron-throughput-bench-", dir=args.work_dir))
    results: dict[str, Any] = {"sustained": {}, "node_log_warnings": {}}
    code = 0
    try:
        results["file_creation"] = file_creation(base)
        if args.spawn_threads > 0:
            results["spawn_ceiling"] = spawn_ceiling(base, args.spawn_threads, args.spawn_seconds)
        for mode in modes:
            by_jobs = results["sustained"].setdefault(mode, {})
            if mode == "apscheduler":
                say("\n[apscheduler] BackgroundScheduler in this process, thread pool of --capacity")
                for n in sizes:
                    by_jobs[str(n)] = aps_sustained(base, n, args.duration, args.warmup, args.capacity)
                continue
            services: dict[str, Any] = {}
            if mode == "cluster":
                _, services["zk"] = cb.start_zookeeper(procs, base / "zookeeper")
                _, services["couch"] = cb.start_pouchdb(procs, base / "pouchdb")
                say(
                    f"\nservices: ZooKeeper 127.0.0.1:{services['zk']}, pouchdb-server 127.0.0.1:{services['couch']}"
                )
            dc = start_nodes(mode, procs, base, services)
            try:
                for n in sizes:
                    by_jobs[str(n)] = dcron_sustained(dc, n, args.duration, args.warmup)
            finally:
                warnings = dc.log_warnings()
                results["node_log_warnings"][mode] = {"lines": len(warnings), "sample": warnings[:10]}
                if warnings:
                    say(f"  {len(warnings)} WARNING/ERROR lines in the node logs, e.g. {warnings[0][:200]}")
                dc.stop()
                procs.stop_all()  # the cluster's services too
    except (KeyboardInterrupt, cb.Interrupted) as exc:
        say(f"\ninterrupted ({str(exc) or 'SIGINT'}): stopping everything")
        code = 130
    except Exception as exc:
        say(f"\nFAILED: {exc!r} (logs in {base})")
        args.keep, code = True, 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if args.keep:
            say(f"temporary folder kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    say(f"\nsummary ({command}, {started:%Y-%m-%d %H:%M} UTC, nproc={info['nproc']}, "
        f"load average at the start {load_start[0]:.1f}, now {os.getloadavg()[0]:.1f}):")  # fmt: skip
    for line in table(results):
        say("  " + line)
    say(
        "  sched CPU: dcrond + its spawner helper, summed over the nodes (APScheduler, bare spawn: this process); "
        "scripts CPU: the reaped sh processes; machine busy: all cores, whole machine"
    )
    if code == 0 and not args.no_save:
        cb.RESULTS.mkdir(parents=True, exist_ok=True)
        path = cb.RESULTS / f"throughput_bench-{started:%Y%m%d-%H%M%S}.json"
        doc = {"command": command, "date": started.isoformat(timespec="seconds"), "machine": info,
               "versions": {"python": info["python"], "apscheduler": info["apscheduler"]}, "nproc": info["nproc"],
               "loadavg_at_start": load_start, "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "results": results, "doc": __doc__}  # fmt: skip
        path.write_text(json.dumps(doc, indent=2) + "\n")
        say(f"results: {path.relative_to(cb.ROOT)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
