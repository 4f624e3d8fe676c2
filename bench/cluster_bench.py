"""Failover time and start lag of real ``dcrond`` nodes: cluster mode against embedded mode.

Run from the repository root::

    python bench/cluster_bench.py            # full run: 5 failovers, 100 and 1,000 jobs, both modes
    python bench/cluster_bench.py --quick    # 100 jobs only (still 5 failovers per mode)

It starts everything it measures, in a temporary folder, on free loopback ports, and stops all of
it by process group at the end (also on failure and Ctrl-C/SIGTERM):

- its own ZooKeeper (``java ... QuorumPeerMain zoo.cfg``, tickTime=500, minSessionTimeout=1000)
  and its own ``pouchdb-server --in-memory`` (from ``.services/npm``); the test services that may
  be running on 21810-21813 and 15984 are left alone;
- **cluster mode**: three ``dcrond`` nodes (``python -m libdcron.daemon``), each with its own
  ``--data-dir`` and ``--listen`` port, sharing ``--election zk://.../<unique chroot>``,
  ``--store http://.../<unique prefix>`` and ``--objects file:///<tmp>/objects``, with
  ``-o session_timeout=2``;
- **embedded mode** (the peer): three ``dcrond`` nodes sharing one ``--data-dir`` (SQLite store,
  file-lock election, local object folder).

What it measures (definitions are printed with the figures):

- **failover**: SIGKILL the leader, time until a survivor's ``status`` says it leads, and time
  until an execution dispatched by the new leader starts its process; then restart the killed
  node (same node id) and go again.
- **start lag**: N jobs all due at the same second; lag from that instant to the worker's
  ``Popen`` (the execution's ``started``) and to the script's own first clock reading.

Figures go to stdout and to ``bench/results/cluster_bench-<date>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import checkout  # before libdcron: puts this checkout's packages first on sys.path

from libdcron.client import Client
from libdcron.errors import DcronError
from libdcron.model import parse_instant
from libdcron.transport.keys import ensure_local_keys

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POUCHDB_BIN = ROOT / ".services" / "npm" / "node_modules" / ".bin" / "pouchdb-server"
ZK_CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"

NODES = 3
NODE_LOG_LEVEL = "WARNING"
NODE_CONFIG: Path | None = None  # a dcrond --config file (--lead)
CAPACITY = 400
SESSION_TIMEOUT = 2.0
LEAD = 0.5  # the leader sends a run this long before its fire instant (NodeSettings.lead)
KILL_PHASE = 0.70  # kill the leader at this fraction of a second (after it sent the next run)
FAR_SCHEDULE = "0 0 0 1 1 *"  # 1 January, 00:00:00 UTC: registered jobs stay idle until updated

FAILOVER_DEFINITIONS = {
    "leader_s": "SIGKILL of the leader -> first `status` answer (polled every 20 ms on each survivor) "
    "in which a survivor says is_leader",
    "dispatch_s": "SIGKILL -> `started` (worker's clock right before Popen) of the earliest execution "
    "of the every-second job `tick` that the killed leader cannot have dispatched: fire time later than "
    f"kill + {LEAD} s (a leader sends a run at most {LEAD} s ahead), or a retry (attempt >= 2); this "
    "includes the new leader's lookback run and the retry of a run lost with the killed node",
    "floor_s": f"what dispatch_s would be with an instant failover: the kill happens at "
    f"x.{int(KILL_PHASE * 100)} s, so the first fire time the old leader cannot have sent is "
    f"{1 + (1 - KILL_PHASE):.2f} s later",
    "excess_s": "dispatch_s - floor_s: how much later than an instant failover the new leader's first "
    "run started (negative when it is the on-time retry of a run the killed leader had sent to itself)",
    "skipped": "whole seconds between the kill and the first new run with no execution at all "
    "(a late leader runs only the newest missed fire time: by design, never a backlog)",
    "rejoin_s": "restart of the killed node (same node id) -> it is listed in `status` members again",
}
LAG_DEFINITIONS = {
    "due": "N jobs registered with a far schedule, then all updated (--update) to `S M H * * *` for "
    "one second T chosen after the registrations (2 x their duration + 20 s ahead), so that the updates are done and the leader has them all in its heap before T",
    "spawn_lag": "execution `started` - T: `started` is set by the worker right before Popen",
    "proc_lag": "script's own clock - T: the script's first command is `date +%s.%N` (so it includes "
    "sh's own start and one fork+exec of date)",
    "recorded_s": "T -> the last of the N execution documents is complete (polled)",
    "percentiles": "linear interpolation between closest ranks (numpy's default)",
}


# -- small helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
        "p99": percentile(values, 0.99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a process, from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan, math.nan
    tick = os.sysconf("SC_CLK_TCK")
    # After ")": state is field 3, so utime/stime/cutime/cstime (14-17) are at 11-14 here.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / tick, (cutime + cstime) / tick


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    try:
        values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def say(text: str = "") -> None:
    print(text, flush=True)


class Interrupted(Exception):
    """SIGTERM/SIGHUP arrived: unwind so that every started process is stopped."""


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


# -- processes -------------------------------------------------------------------------------------


@dataclass
class Proc:
    """A child in its own process group, stopped by signalling that group."""

    name: str
    argv: list[str]
    log_path: Path
    cwd: Path | None = None
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        if self.alive():
            self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait()

    def stop(self, grace: float = 15.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                say(f"  {self.name} (pid {self.pid}) did not stop within {grace:g}s: SIGKILL")
        # Whatever is left in the group (a wrapper's child, say) goes too.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


class Processes:
    """Every process the bench started, so that cleanup reaches all of them."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        proc.start()
        return proc

    def stop_all(self) -> None:
        # dcrond first (they talk to the services while stopping), then the services.
        nodes = [p for p in self.procs if p.name.startswith("dcrond")]
        others = [p for p in self.procs if not p.name.startswith("dcrond")]
        for group in (nodes, others):
            for p in group:
                if p.alive():
                    p.signal_group(signal.SIGTERM)
            for p in group:
                p.stop()
        self.procs.clear()


def start_zookeeper(procs: Processes, base: Path) -> tuple[Proc, int]:
    port = free_port()
    base.mkdir(parents=True)
    (base / "data").mkdir()
    cfg = base / "zoo.cfg"
    cfg.write_text(
        "\n".join(
            [
                "tickTime=500",
                "initLimit=10",
                "syncLimit=5",
                f"dataDir={base / 'data'}",
                f"clientPort={port}",
                "clientPortAddress=127.0.0.1",
                "admin.enableServer=false",
                "4lw.commands.whitelist=ruok,srvr,stat,mntr",
                "minSessionTimeout=1000",
                "maxClientCnxns=0",
                "",
            ]
        )
    )
    argv = [
        "java",
        "-Xmx256m",
        "-cp",
        ZK_CLASSPATH,
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        str(cfg),
    ]
    proc = procs.start(Proc("zookeeper", argv, base / "server.log", cwd=base))

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"ZooKeeper exited; see {base / 'server.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"ruok")
                return s.recv(16) == b"imok"
        except OSError:
            return False

    wait_for(ready, 30, "ZooKeeper")
    return proc, port


def start_pouchdb(procs: Processes, base: Path) -> tuple[Proc, int]:
    if not POUCHDB_BIN.exists():
        raise RuntimeError(f"{POUCHDB_BIN} is missing: run scripts/install-services.sh")
    port = free_port()
    base.mkdir(parents=True)
    argv = [str(POUCHDB_BIN), "--in-memory", "--host", "127.0.0.1", "--port", str(port), "--no-color"]
    proc = procs.start(Proc("pouchdb-server", argv, base / "server.log", cwd=base))

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"pouchdb-server exited; see {base / 'server.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_for(ready, 30, "pouchdb-server")
    return proc, port


# -- a three-node dcron ------------------------------------------------------------------------------


@dataclass
class Node:
    node_id: str
    port: int
    proc: Proc

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


@dataclass
class Dcron:
    """Three dcrond nodes of one mode, and the means to query them."""

    mode: str
    root: Path
    procs: Processes
    node_args: Callable[[str], list[str]]  # node id -> mode-specific flags
    nodes: list[Node] = field(default_factory=list)
    #: The folder whose keys/ the nodes share (``--keys-dir`` in cluster mode, the shared data
    #: folder in embedded mode) and the clients use: made before the nodes start.
    keys_home: Path | None = None

    def start(self) -> None:
        if self.keys_home is not None:
            ensure_local_keys(self.keys_home / "keys")
        env = checkout.node_env({k: v for k, v in os.environ.items() if not k.startswith("DCRON_")})
        env["PYTHONUNBUFFERED"] = "1"
        for i in range(1, NODES + 1):
            node_id = f"{self.mode}-n{i}"
            port = free_port()
            argv = [
                sys.executable,
                "-m",
                "libdcron.daemon",
                "--node-id",
                node_id,
                "--listen",
                f"tcp://127.0.0.1:{port}",
                "--capacity",
                str(CAPACITY),
                "--log-level",
                NODE_LOG_LEVEL,
                *(["--config", str(NODE_CONFIG)] if NODE_CONFIG else []),
                *self.node_args(node_id),
            ]
            proc = Proc(f"dcrond {node_id}", argv, self.root / f"{node_id}.log", cwd=self.root, env=env)
            self.nodes.append(Node(node_id, port, proc))
            self.procs.start(proc)
        self.wait_members(NODES, 60)

    def client(self, node: Node, timeout: float = 10.0) -> Client:
        return Client(node.endpoint, timeout=timeout, data_dir=self.keys_home)

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.proc.alive()]

    def any_client(self, timeout: float = 10.0) -> Client:
        return Client([n.endpoint for n in self.alive()], timeout=timeout, data_dir=self.keys_home)

    def status(self, node: Node, timeout: float = 1.0) -> dict[str, Any] | None:
        with self.client(node, timeout) as c:
            try:
                return c.status()
            except DcronError:
                return None

    def wait_members(self, count: int, timeout: float, node: Node | None = None) -> None:
        def ok() -> bool:
            for n in [node] if node else self.alive():
                st = self.status(n)
                if st is None or st["leader"] is None or len(st["members"]) < count:
                    return False
            return True

        wait_for(ok, timeout, f"{self.mode}: {count} members and a leader", interval=0.2)

    def leader(self) -> Node:
        def find() -> Node | None:
            for n in self.alive():
                st = self.status(n)
                if st and st["is_leader"]:
                    return n
            return None

        found: Node = wait_for(find, 30, f"{self.mode}: a leader")
        return found

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc.alive():
                n.proc.signal_group(signal.SIGTERM)
        for n in self.nodes:
            n.proc.stop()
        mine = [id(n.proc) for n in self.nodes]
        self.procs.procs = [p for p in self.procs.procs if id(p) not in mine]

    def log_warnings(self) -> list[str]:
        lines: list[str] = []
        for n in self.nodes:
            with contextlib.suppress(OSError):
                lines += [
                    f"{n.node_id}: {line}"
                    for line in n.proc.log_path.read_text(errors="replace").splitlines()
                    if " WARNING " in line or " ERROR " in line or "Traceback" in line
                ]
        return lines


# -- failover --------------------------------------------------------------------------------------


def executions(client: Client, name: str, limit: int = 200) -> list[dict[str, Any]]:
    return client.executions(name, limit=limit)


def failover(dc: Dcron, rounds: int, script: Path) -> dict[str, Any]:
    say(f"\n[{dc.mode}] failover: {rounds} rounds, SIGKILL the leader at x.{int(KILL_PHASE * 100)} s")
    with dc.any_client() as c:
        c.schedule("tick", "* * * * * *", "sh", script, update=True)
        c.enable("tick")
    with dc.any_client() as c:
        wait_for(lambda: len(executions(c, "tick", 5)) >= 3, 30, "tick to run")
    results: list[dict[str, Any]] = []
    for r in range(1, rounds + 1):
        dc.wait_members(NODES, 60)
        time.sleep(2.0)  # steady ticking with all nodes
        old = dc.leader()
        survivors = [n for n in dc.nodes if n is not old]
        now = time.time()
        time.sleep((math.floor(now) + 1 + KILL_PHASE - now) % 1.0 or 1.0)
        t_kill = time.time()
        old.proc.kill()  # SIGKILL to its process group; returns once it is reaped
        clients = [dc.client(n, timeout=0.5) for n in survivors]
        new: Node | None = None
        t_leader = math.nan
        deadline = time.monotonic() + 30
        while new is None and time.monotonic() < deadline:
            for n, cl in zip(survivors, clients, strict=True):
                try:
                    st = cl.status()
                except DcronError:
                    continue
                if st["is_leader"]:
                    t_leader, new = time.time(), n
                    break
            else:
                time.sleep(0.02)
        for cl in clients:
            cl.close()
        if new is None:
            raise RuntimeError(f"{dc.mode}: no new leader within 30 s of the kill")

        def eligible(ex: dict[str, Any], t_kill: float = t_kill) -> bool:
            if not ex["started"] or parse_instant(ex["started"]).timestamp() <= t_kill:
                return False
            fire = parse_instant(ex["fire_time"]).timestamp()
            return fire > t_kill + LEAD or ex["attempt"] >= 2

        def first_new_run(new: Node = new) -> dict[str, Any] | None:
            with dc.client(new, timeout=5) as c:
                rows = executions(c, "tick", 40)
            done = [x for x in rows if eligible(x) and x["started"] and x["status"] != "running"]
            # Wait for two, so that an earlier one still being recorded is not missed.
            if len(done) < 2:
                return None
            return min(done, key=lambda x: parse_instant(x["started"]))

        first = wait_for(first_new_run, 60, f"{dc.mode}: a run dispatched by the new leader", 0.2)
        t_first = parse_instant(first["started"]).timestamp()
        with dc.client(new, timeout=5) as c:
            rows = executions(c, "tick", 60)
        fired = {int(parse_instant(x["fire_time"]).timestamp()) for x in rows}
        skipped = [s for s in range(math.floor(t_kill) + 1, math.floor(t_first)) if s not in fired]
        lost = [
            x["id"]
            for x in rows
            if x["status"] == "lost" and parse_instant(x["fire_time"]).timestamp() > t_kill - 2
        ]
        kind = "retry" if first["attempt"] >= 2 else "scheduled"
        late = t_first - parse_instant(first["fire_time"]).timestamp()
        if kind == "scheduled" and late > 0.2:
            kind = "late (lookback/no-overlap)"
        floor_s = (math.floor(t_kill + LEAD) + 1) - t_kill
        # Restart the killed node under the same id (ZooKeeper: it may wait for its old session).
        t_restart = time.time()
        old.proc.start()
        dc.wait_members(NODES, 60, node=new)
        rejoin_s = time.time() - t_restart
        row = {
            "round": r,
            "killed": old.node_id,
            "new_leader": new.node_id,
            "leader_s": t_leader - t_kill,
            "dispatch_s": t_first - t_kill,
            "floor_s": floor_s,
            "excess_s": t_first - t_kill - floor_s,
            "first_run": first["id"],
            "first_run_kind": kind,
            "first_run_node": first["node"],
            "skipped": len(skipped),
            "lost": lost,
            "rejoin_s": rejoin_s,
        }
        results.append(row)
        say(
            f"  round {r}: killed {old.node_id} -> {new.node_id} leads after {row['leader_s']:.3f}s, "
            f"dispatching after {row['dispatch_s']:.3f}s (floor {floor_s:.2f}s; {kind}, "
            f"{first['id']} on {first['node']}); {len(skipped)} fire times skipped, "
            f"{len(lost)} lost; killed node rejoined in {rejoin_s:.1f}s"
        )
    with dc.any_client() as c:
        c.disable("tick")
        rows = executions(c, "tick", 500)
    # No fire time may have succeeded twice (the deterministic execution id guarantees it).
    succeeded = Counter(x["fire_time"] for x in rows if x["status"] == "succeeded")
    doubles = sorted(f for f, k in succeeded.items() if k > 1)
    leader = [x["leader_s"] for x in results]
    dispatch = [x["dispatch_s"] for x in results]
    out: dict[str, Any] = {
        "rounds": results,
        "leader_s": {"median": statistics.median(leader), "max": max(leader)},
        "dispatch_s": {"median": statistics.median(dispatch), "max": max(dispatch)},
        "excess_s": {
            "median": statistics.median([x["excess_s"] for x in results]),
            "max": max(x["excess_s"] for x in results),
        },
        "first_run_kinds": dict(Counter(x["first_run_kind"] for x in results)),
        "rejoin_s": {"median": statistics.median([x["rejoin_s"] for x in results])},
        "fire_times_run_twice": doubles,
    }
    say(
        f"  {dc.mode}: new leader median {out['leader_s']['median']:.3f}s max {out['leader_s']['max']:.3f}s; "
        f"dispatching median {out['dispatch_s']['median']:.3f}s max {out['dispatch_s']['max']:.3f}s; "
        f"fire times that succeeded twice: {len(doubles)}"
    )
    return out


# -- start lag -------------------------------------------------------------------------------------


def _in_parallel(dc: Dcron, items: Iterable[str], call: Callable[[Client, str], Any]) -> float:
    """Spread calls over one client per live node; the elapsed seconds."""
    names = list(items)
    nodes = dc.alive()
    chunks = [names[i :: len(nodes)] for i in range(len(nodes))]

    def work(node: Node, chunk: list[str]) -> None:
        with dc.client(node, timeout=30) as c:
            for name in chunk:
                call(c, name)

    t0 = time.monotonic()
    with ThreadPoolExecutor(len(nodes)) as pool:
        for future in [pool.submit(work, n, ch) for n, ch in zip(nodes, chunks, strict=True)]:
            future.result()
    return time.monotonic() - t0


def start_lag(dc: Dcron, n: int, base: Path) -> dict[str, Any]:
    say(f"\n[{dc.mode}] start lag: {n} jobs due at the same second")
    tag = f"b{n}x{uuid.uuid4().hex[:6]}"
    stamps = base / f"stamps-{dc.mode}-{tag}"
    stamps.mkdir(parents=True)
    script = base / f"stamp-{tag}.sh"
    script.write_text(f'date +%s.%N > "{stamps}/$DCRON_JOB"\n')
    names = [f"{tag}-{i:04d}" for i in range(n)]

    reg_s = _in_parallel(dc, names, lambda c, name: c.schedule(name, FAR_SCHEDULE, "sh", script))
    say(f"  registered {n} jobs (far schedule) in {reg_s:.1f}s ({n / reg_s:.0f}/s)")
    # The instant is chosen now that the registration rate is known: an update makes more store
    # calls than a registration (create, conflict, read, update), so allow twice as long, plus 20 s.
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=math.ceil(2 * reg_s) + 20)
    expr = f"{due.second} {due.minute} {due.hour} * * *"
    upd_s = _in_parallel(dc, names, lambda c, name: c.schedule(name, expr, "sh", script, update=True))
    margin = (due - datetime.now(UTC)).total_seconds()
    say(
        f"  updated them to {expr!r} (due {due:%H:%M:%S}Z) in {upd_s:.1f}s; "
        f"{margin:.1f}s left before the due instant"
    )
    if margin < 10:
        raise RuntimeError(f"only {margin:.1f}s left before the due instant: too close to trust")
    t_due = due.timestamp()
    time.sleep(max(0.0, t_due - 1.0 - time.time()))
    watched = {p.name: p for p in dc.procs.procs if p.alive()}
    cpu_before = {name: cpu_seconds(p.pid) for name, p in watched.items()}
    ticks_before = machine_ticks()
    t_cpu = time.monotonic()
    wait_for(
        lambda: sum(1 for _ in stamps.iterdir()) >= n,
        margin + 180,
        f"{n} scripts to run",
        interval=0.25,
    )
    stamped = time.time()

    def idle() -> bool:
        for node in dc.alive():
            st = dc.status(node, timeout=5)
            if st is None or st["running"] or st["outbox"]:
                return False
        return True

    wait_for(idle, 120, "runs to end on every node", interval=0.25)
    cpu_window = time.monotonic() - t_cpu
    ticks_after = machine_ticks()
    total_ticks = ticks_after[1] - ticks_before[1]
    machine_busy = (ticks_after[0] - ticks_before[0]) / total_ticks if total_ticks else math.nan
    cpu: dict[str, dict[str, float]] = {}
    for name, p in watched.items():
        own, children = cpu_seconds(p.pid)
        cpu[name] = {"self": own - cpu_before[name][0], "children": children - cpu_before[name][1]}
    rows: dict[str, dict[str, Any]] = {}

    def read(c: Client, name: str) -> None:
        runs = [x for x in c.executions(name, limit=10) if parse_instant(x["fire_time"]).timestamp() == t_due]
        if runs:
            first = min(runs, key=lambda x: x["attempt"])
            rows[name] = {**first, "attempts": len(runs)}

    read_s = _in_parallel(dc, names, read)
    pending = [x for x in names if x not in rows or rows[x]["status"] == "running"]
    for _ in range(60):
        if not pending:
            break
        time.sleep(1)
        _in_parallel(dc, pending, read)
        pending = [x for x in names if x not in rows or rows[x]["status"] == "running"]
    spawn = [parse_instant(r["started"]).timestamp() - t_due for r in rows.values() if r["started"]]
    proc: list[float] = []
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            proc.append(float((stamps / name).read_text().strip()) - t_due)
    ended = [parse_instant(r["ended"]).timestamp() - t_due for r in rows.values() if r["ended"]]
    statuses = Counter(r["status"] for r in rows.values())
    per_node = Counter(r["node"] for r in rows.values())
    retried = sum(1 for r in rows.values() if r["attempts"] > 1)
    durations = [
        parse_instant(r["ended"]).timestamp() - parse_instant(r["started"]).timestamp()
        for r in rows.values()
        if r["ended"] and r["started"]
    ]
    out: dict[str, Any] = {
        "n": n,
        "due": due.isoformat(),
        "register_s": reg_s,
        "update_s": upd_s,
        "register_per_s": n / reg_s,
        "spawn_lag_s": summary(spawn),
        "proc_lag_s": summary(proc),
        "run_duration_s": summary(durations),
        "last_ended_s": max(ended) if ended else None,
        "all_stamped_s": stamped - t_due,
        "read_executions_s": read_s,
        "statuses": dict(statuses),
        "per_node": dict(sorted(per_node.items())),
        "with_retries": retried,
        "missing": [x for x in names if x not in rows],
        "cpu_window_s": cpu_window,
        "cpu_s": cpu,
        "machine_busy": machine_busy,
        "loadavg_after": os.getloadavg(),
    }
    sp, pr = out["spawn_lag_s"], out["proc_lag_s"]
    say(
        f"  spawn lag (started - due): p50 {sp['p50']:.3f}s p99 {sp['p99']:.3f}s max {sp['max']:.3f}s  "
        f"min {sp['min']:.3f}s"
    )
    say(
        f"  process start (script clock - due): p50 {pr['p50']:.3f}s p99 {pr['p99']:.3f}s "
        f"max {pr['max']:.3f}s  ({len(proc)} of {n} stamped)"
    )
    say(
        f"  statuses {dict(statuses)}; per node {dict(sorted(per_node.items()))}; "
        f"{retried} with more than one attempt; {len(out['missing'])} without an execution; "
        f"last run recorded as ended {out['last_ended_s']:.2f}s after due; "
        f"reading {n} jobs' executions took {read_s:.1f}s"
    )
    say(
        f"  CPU from due-1s until all runs ended ({cpu_window:.1f}s; whole machine {machine_busy:.0%} busy "
        f"of {os.cpu_count()} cores; load average now {os.getloadavg()[0]:.1f}), seconds: "
        + ", ".join(
            f"{name} {v['self']:.1f}" + (f" (+{v['children']:.1f} scripts)" if v["children"] > 0.05 else "")
            for name, v in cpu.items()
        )
    )
    return out


# -- the run ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    mem = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    pouch = ""
    with contextlib.suppress(OSError, ValueError, KeyError):
        pkg = POUCHDB_BIN.resolve().parent.parent / "package.json"
        pouch = json.loads(pkg.read_text())["version"]
    zk = ""
    with contextlib.suppress(OSError):
        zk = Path("/usr/share/java/zookeeper.jar").resolve().name
    return {
        "nproc": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dcron_commit": commit,
        "zookeeper": zk,
        "pouchdb_server": pouch,
    }


def run_mode(
    name: str,
    procs: Processes,
    base: Path,
    node_args: Callable[[str], list[str]],
    sizes: list[int],
    rounds: int,
    result: dict[str, Any],
) -> None:
    """Measure one mode; figures go into ``result`` as they come (so a failure keeps them)."""
    root = base / name
    root.mkdir()
    dc = Dcron(name, root, procs, node_args, keys_home=root / ("keys-home" if name == "cluster" else "shared"))
    t0 = time.monotonic()
    dc.start()
    say(
        f"\n[{name}] {NODES} nodes up in {time.monotonic() - t0:.1f}s: "
        + ", ".join(f"{n.node_id}={n.endpoint}" for n in dc.nodes)
    )
    tick = base / f"tick-{name}.sh"
    tick.write_text("true\n")
    try:
        if rounds > 0:
            result["failover"] = failover(dc, rounds, tick)
        result["start_lag"] = {}
        for n in sizes:
            result["start_lag"][str(n)] = start_lag(dc, n, root)
    finally:
        warnings = dc.log_warnings()
        result["node_log_warnings"] = len(warnings)
        result["node_log_sample"] = warnings[:20]
        dc.stop()


def table(results: dict[str, Any], sizes: list[int]) -> list[str]:
    """The figures of both modes side by side."""
    modes = [m for m in ("cluster", "embedded") if m in results]
    rows: list[tuple[str, ...]] = [("figure", *modes)]

    def value(mode: str, *path: str) -> Any:
        node: Any = results[mode]
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def row(label: str, *path: str) -> None:
        cells = []
        for m in modes:
            v = value(m, *path)
            if isinstance(v, dict):  # per node counts
                cells.append(" ".join(str(x) for x in v.values()))
            else:
                cells.append("-" if v is None else f"{v:.3f}")
        rows.append((label, *cells))

    for label, key in (
        ("new leader", "leader_s"),
        ("dispatching", "dispatch_s"),
        ("dispatching - floor", "excess_s"),
    ):
        for stat in ("median", "max"):
            row(f"failover {label} {stat} (s)", "failover", key, stat)
    for n in sizes:
        for label, key in (("spawn lag", "spawn_lag_s"), ("process start lag", "proc_lag_s")):
            for stat in ("p50", "p99", "max"):
                row(f"{n} jobs {label} {stat} (s)", "start_lag", str(n), key, stat)
        row(f"{n} jobs last recorded (s after due)", "start_lag", str(n), "last_ended_s")
        row(f"{n} jobs registration (jobs/s)", "start_lag", str(n), "register_per_s")
        row(f"{n} jobs machine busy (fraction)", "start_lag", str(n), "machine_busy")
        row(f"{n} jobs per node", "start_lag", str(n), "per_node")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 jobs only (no 1,000-job round)")
    parser.add_argument("--rounds", type=int, default=5, help="failovers per mode [5]")
    parser.add_argument(
        "--modes", default="cluster,embedded", help="comma-separated: cluster, embedded [both]"
    )
    parser.add_argument(
        "--sizes", default=None, help="comma-separated job counts for the start lag [100,1000; --quick: 100]"
    )
    parser.add_argument(
        "--node-log-level", default="WARNING", help="dcrond --log-level (INFO to diagnose) [WARNING]"
    )
    parser.add_argument(
        "--lead",
        type=float,
        default=None,
        help="experiment: the leader sends runs this many seconds ahead (dcrond config `lead`) [0.5]",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/*.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    sizes = [100] if args.quick else [100, 1000]
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    global NODE_LOG_LEVEL, NODE_CONFIG, LEAD
    NODE_LOG_LEVEL = args.node_log_level.upper()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    started = datetime.now(UTC)
    command = shlex.join(["python", *sys.argv])
    info = machine()
    load_start = os.getloadavg()
    say(f"command: {command}")
    say(f"date:    {started:%Y-%m-%d %H:%M:%S} UTC")
    say(
        f"machine: nproc={info['nproc']}, memory {info['memory']}, Python {info['python']}, "
        f"{info['platform']}; dcron {info['dcron_commit']}, {info['zookeeper']}, "
        f"pouchdb-server {info['pouchdb_server']}"
    )
    say(
        f"load:    load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start (shared machine?)"
    )
    say(
        f"setup:   {NODES} dcrond nodes per mode on this host, --capacity {CAPACITY}, "
        f"-o session_timeout={SESSION_TIMEOUT:g} (cluster), --log-level WARNING"
    )
    say("definitions:")
    for key, text in {**FAILOVER_DEFINITIONS, **LAG_DEFINITIONS}.items():
        say(f"  {key}: {text}")

    # SIGINT explicitly too: a shell without job control starts background commands with it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)
    procs = Processes()
    base = Path(tempfile.mkdtemp(prefix="dcron-cluster-bench-"))
    results: dict[str, Any] = {}
    code = 0
    if args.lead is not None:
        NODE_CONFIG = base / "dcron.toml"
        NODE_CONFIG.write_text(f"[node]\nlead = {args.lead}\n")
        LEAD = args.lead
        say(f"experiment: dcrond nodes run with lead = {args.lead} s (config {NODE_CONFIG})")
    try:
        if "cluster" in modes:
            _, zk_port = start_zookeeper(procs, base / "zookeeper")
            _, couch_port = start_pouchdb(procs, base / "pouchdb")
            say(
                f"\nservices: ZooKeeper 127.0.0.1:{zk_port}, pouchdb-server 127.0.0.1:{couch_port} (in memory)"
            )
            objects = base / "objects"
            objects.mkdir()
            chroot = f"/dcron-bench-{uuid.uuid4().hex[:8]}"
            prefix = f"bench{uuid.uuid4().hex[:8]}"

            def cluster_args(node_id: str) -> list[str]:
                return [
                    "--data-dir",
                    str(base / "cluster" / "data" / node_id),
                    "--keys-dir",
                    str(base / "cluster" / "keys-home" / "keys"),
                    "--election",
                    f"zk://127.0.0.1:{zk_port}{chroot}",
                    "--store",
                    f"http://127.0.0.1:{couch_port}/{prefix}",
                    "--objects",
                    f"file://{objects}",
                    "-o",
                    f"session_timeout={SESSION_TIMEOUT:g}",
                ]

            results["cluster"] = {}
            run_mode("cluster", procs, base, cluster_args, sizes, args.rounds, results["cluster"])
        if "embedded" in modes:

            def embedded_args(node_id: str) -> list[str]:
                return ["--data-dir", str(base / "embedded" / "shared")]

            results["embedded"] = {}
            run_mode("embedded", procs, base, embedded_args, sizes, args.rounds, results["embedded"])
    except (KeyboardInterrupt, Interrupted) as exc:
        say(f"\ninterrupted ({str(exc) or 'SIGINT'}): stopping everything")
        code = 130
    except Exception as exc:
        say(f"\nFAILED: {exc!r} (logs in {base})")
        args.keep = True
        code = 1
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

    if results:
        say(f"\nsummary ({command}, {started:%Y-%m-%d %H:%M} UTC, nproc={info['nproc']}):")
        for line in table(results, sizes):
            say("  " + line)
    if results and code == 0 and not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"cluster_bench-{started:%Y%m%d-%H%M%S}.json"
        doc = {
            "command": command,
            "date": started.isoformat(),
            "machine": info,
            "loadavg_at_start": load_start,
            "settings": {
                "nodes": NODES,
                "capacity": CAPACITY,
                "session_timeout": SESSION_TIMEOUT,
                "lead": LEAD,
                "kill_phase": KILL_PHASE,
                "sizes": sizes,
                "rounds": args.rounds,
            },
            "definitions": {**FAILOVER_DEFINITIONS, **LAG_DEFINITIONS},
            "results": results,
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
        say(f"\nwritten: {path.relative_to(ROOT)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
