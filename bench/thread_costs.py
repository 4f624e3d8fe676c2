"""CPU time and context switches of each thread of a running ``dcrond``, per run.

Where a profile of Python frames (``py-spy``, ``bench/pyspy_top.py``) shows where the interpreter
is, this shows what each thread costs the machine: its CPU time (user and system, from
``/proc/PID/task/TID/stat``) and how often it was switched out (``voluntary_ctxt_switches``:
it waited, for a lock, the interpreter lock, a queue or a system call; ``nonvoluntary``: it was
preempted), over a window, divided by the runs the node did in it.  Threads are named by
``py-spy dump`` when it is installed (Python 3.11 gives its threads no native names), and
numbered threads of one pool are summed (``dcron-finish-0`` .. ``-7`` as ``dcron-finish``).

Run it beside a load of a known rate, e.g. in one shell::

    python bench/throughput_bench.py --modes single --jobs 300 --duration 20 --spawn-threads 0

and in another, once the window has begun::

    python bench/thread_costs.py --wait 12 --seconds 10 --runs-per-second 300
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict

Sample = dict[int, tuple[int, int, float]]  # tid -> voluntary, involuntary, CPU seconds


def find_daemon(timeout: float) -> int:
    """The pid of the first ``libdcron.daemon`` process to appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-f", "libdcron.daemon"], capture_output=True, text=True).stdout.split()
        if found:
            return int(found[0])
        time.sleep(0.1)
    sys.exit("no libdcron.daemon process appeared")


def sample(pid: int) -> Sample:
    ticks = os.sysconf("SC_CLK_TCK")
    out: Sample = {}
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        tid = int(status.split("/")[4])
        try:
            with open(status) as file:
                fields = dict(line.split(":", 1) for line in file if ":" in line)
            with open(f"/proc/{pid}/task/{tid}/stat") as file:
                stat = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        cpu = (int(stat[11]) + int(stat[12])) / ticks
        out[tid] = (int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"]), cpu)
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from ``py-spy dump`` (empty without py-spy)."""
    if shutil.which("py-spy") is None:
        return {}
    dump = subprocess.run(["py-spy", "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True)
    names: dict[int, str] = {}
    for line in dump.stdout.splitlines():
        m = re.match(r'Thread (\d+) \(.*?\): "([^"]+)"', line)
        if m:
            names[int(m.group(1))] = re.sub(r"[-_]\d+$", "", m.group(2))
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pid", type=int, help="the dcrond (default: the first libdcron.daemon found)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait before the window [0]")
    parser.add_argument("--seconds", type=float, default=10.0, help="the window [10]")
    parser.add_argument("--runs-per-second", type=float, required=True, help="the load's rate (runs a second)")
    args = parser.parse_args()
    pid = args.pid or find_daemon(60.0)
    time.sleep(args.wait)
    names = thread_names(pid)
    before, started = sample(pid), time.monotonic()
    time.sleep(args.seconds)
    after, ended = sample(pid), time.monotonic()
    runs = args.runs_per_second * (ended - started)
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for tid, (vol, inv, cpu) in after.items():
        if tid in before:
            row = totals[names.get(tid, f"thread {tid}")]
            row[0] += vol - before[tid][0]
            row[1] += inv - before[tid][1]
            row[2] += cpu - before[tid][2]
    all_vol, all_inv, all_cpu = (sum((row[k] for row in totals.values()), 0.0) for k in range(3))
    print(f"dcrond {pid}, {ended - started:.1f} s at {args.runs_per_second:g} runs/s ({runs:.0f} runs), per run:")
    print(f"  {'all threads':24s} CPU {all_cpu / runs * 1000:6.3f} ms  switches voluntary {all_vol / runs:5.1f}, "
          f"involuntary {all_inv / runs:5.1f}")  # fmt: skip
    for name, (v, i, c) in sorted(totals.items(), key=lambda kv: -kv[1][2]):
        if c or v:
            print(f"  {name:24s} CPU {c / runs * 1000:6.3f} ms  switches voluntary {v / runs:5.1f}, involuntary {i / runs:5.1f}")


if __name__ == "__main__":
    main()
