"""A burst of runs started by dcron's spawner helpers against a bare loop, in the same script.

What a burst of N runs due at once costs on this machine without the rest of ``dcrond``: the
runs are the ``sh`` script of ``apscheduler_bench`` (it appends its own clock, ``date +%s.%N``,
to a file of its own), started all at once

- **bare**: by one Python loop of ``os.posix_spawn`` (the least any scheduler can take);
- **helpers**: by ``--helpers`` :class:`libdcron.spawner.Spawner` helpers, each run in a cgroup of
  its own made beforehand (``--no-cgroups``: without), as a worker starts a staged run.

Start lag = the script's clock - the instant the first request was made: p50 / p99 over the N
runs, and the helpers' own CPU a spawn (``/proc/PID/stat``).  The files the runs write are made
before the first round and truncated between rounds (a file made after files were deleted costs
ext4 up to a millisecond: see ``bench/file_creation.py``), and the peers run in turns::

    python bench/spawn_path.py --runs 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import checkout  # noqa: F401  (before libdcron: puts this checkout's packages first on sys.path)

from libdcron.cgroup import cgroup2_mount
from libdcron.spawner import RemoteProcess, Spawner

SCRIPT = 'echo $(date +%s.%N) >> "$OUT/$J"\n'


def lags(out: Path, n: int, t0: float) -> list[float]:
    found = []
    for i in range(n):
        path = out / f"j{i}"
        text = path.read_text().split()
        if text:
            found.append(float(text[0]) - t0)
        os.truncate(path, 0)
    return sorted(found)


def bare(script: Path, env: dict[str, str], n: int) -> tuple[float, float]:
    t0 = time.time()
    pids = [
        os.posix_spawn("/bin/sh", ["sh", str(script)], {**env, "J": f"j{i}"}, setsid=True) for i in range(n)
    ]
    for pid in pids:
        os.waitpid(pid, 0)
    return t0, 0.0


def helpers(script: Path, env: dict[str, str], n: int, k: int, cgroups: Path | None) -> tuple[float, float]:
    spawners = [Spawner(env) for _ in range(k)]
    for s in spawners:
        s.start()
    paths: list[Path | None] = [None] * n
    if cgroups is not None:
        paths = [cgroups / str(i) for i in range(n)]
        for p in paths:
            assert p is not None
            p.mkdir(exist_ok=True)
    time.sleep(0.5)  # the helpers are up
    done = threading.Semaphore(0)
    procs: list[RemoteProcess] = []

    def reply(process: RemoteProcess | None, error: OSError | None) -> None:
        assert process is not None, error
        procs.append(process)
        process.when_exited(done.release)

    t0 = time.time()
    for i in range(n):
        cg = paths[i]
        spawners[i % k].spawn(["/bin/sh", str(script)], {"J": f"j{i}"}, None, str(cg) if cg else None, reply)
    for _ in range(n):
        done.acquire()
    cpu = 0.0
    for s in spawners:
        assert s._helper is not None
        fields = Path(f"/proc/{s._helper.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for process in procs:
        process.stdout.close()
    for s in spawners:
        s.close()
    for path in paths:
        if path is not None:
            path.rmdir()
    return t0, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--helpers", type=int, default=3, help="spawner helpers [3, as a worker has]")
    parser.add_argument("--no-cgroups", action="store_true", help="the helpers' runs without cgroups")
    parser.add_argument("--work-dir", default=None, help="where the runs' files go [a temporary folder]")
    args = parser.parse_args()
    mount = None if args.no_cgroups else cgroup2_mount()
    cgroups = mount / "dcron-spawn-path" if mount else None
    if cgroups is not None:
        cgroups.mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="spawn-path-", dir=args.work_dir))
    try:
        script = out / "run.sh"
        script.write_text(SCRIPT)
        for i in range(args.runs):
            (out / f"j{i}").touch()
        env = {"PATH": "/usr/bin:/bin", "OUT": str(out)}
        what = f"{args.helpers} helper(s), " + ("a cgroup a run" if cgroups else "no cgroups")
        print(
            f"{args.runs} runs at once, {args.rounds} rounds in turns; helpers: {what}; {os.cpu_count()} cpus"
        )
        p99: dict[str, list[float]] = {"bare": [], "helpers": []}
        for r in range(1, args.rounds + 1):
            for name in ("bare", "helpers"):
                if name == "bare":
                    t0, cpu = bare(script, env, args.runs)
                else:
                    t0, cpu = helpers(script, env, args.runs, args.helpers, cgroups)
                got = lags(out, args.runs, t0)
                if len(got) != args.runs:
                    sys.exit(f"{name}: {len(got)} of {args.runs} runs stamped")
                p99[name].append(got[int(len(got) * 0.99) - 1])
                extra = (
                    f", helpers' own CPU {cpu / args.runs * 1e3:.3f} ms a spawn" if name == "helpers" else ""
                )
                print(
                    f"  round {r} {name:8s} p50 {got[len(got) // 2]:.3f} s, p99 {p99[name][-1]:.3f} s{extra}"
                )
        b, h = statistics.median(p99["bare"]), statistics.median(p99["helpers"])
        by_round = ", ".join(f"{x / y:.2f}" for x, y in zip(p99["helpers"], p99["bare"], strict=True))
        print(
            f"p99, median of {args.rounds}: helpers {h:.3f} s, bare {b:.3f} s: {h / b:.2f}x (by round {by_round})"
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if cgroups is not None:
            with contextlib.suppress(OSError):
                cgroups.rmdir()


if __name__ == "__main__":
    main()
