"""How fast dcron's schedule engine finds fire times, next to croniter, in several zones.

Run from the repository root::

    python bench/schedule_bench.py                # N = 1,000 fire times per row
    python bench/schedule_bench.py -n 200 --budget 0.1

For every expression and zone it times the next N fire instants after a fixed start
(2024-01-01T00:00Z), chained:

- **dcron**: ``parse_schedule(expr, tz).next_after(previous)`` (the schedule is parsed once, before
  the clock starts, as the leader does);
- **croniter** (the installed version): ``croniter(expr, start_in_zone,
  implement_cron_bug=True).get_next(datetime)``, with the start an aware datetime in the zone
  (``implement_cron_bug`` is croniter's form of Debian's day rule, which dcron follows); a 6-field
  expression is passed with ``second_at_beginning=True`` (croniter's own 6-field form puts the
  seconds last). ``@every`` has no croniter form: its croniter column is empty.

When the N-th instants differ, a note says so: around DST changes croniter's rules differ from
Debian's, and a few day fields (``10,*``) croniter reads its own way.

The two runs of a row alternate, repeated until the row has taken ``--budget`` seconds (at least
``--min-reps`` times, at most ``--max-reps``), and the fastest run of each is shown: on a shared
machine both see the same load.  Runs are timed by the process's CPU clock (``--clock cpu``, the
default: other processes on a shared machine do not count) or the wall clock (``--clock wall``).
A row may cap N (``SPARSE_N``, empty
now); the table says which N each row used.  It prints what it measured: no pass/fail.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo

from croniter import croniter

# Measure this checkout, not an installed copy: ``python bench/schedule_bench.py`` puts bench/, not
# the repository root, first on sys.path.  DCRON_BENCH_SOURCE points at another tree (to compare).
sys.path.insert(0, os.environ.get("DCRON_BENCH_SOURCE") or str(Path(__file__).resolve().parent.parent))

import libdcron
from libdcron.schedule import parse_schedule

EXPRESSIONS = [
    "* * * * *",
    "*/5 * * * *",
    "0 0 29 2 *",
    "30 2 * * *",
    "0 9 * * 1-5",
    "*/10 * * * * *",
    "0 0 1 1 *",
    "@every 90s",
    "15 3 * * 0",
    # Debian's day rule: a day-of-month or day-of-week starting with '*' must match with the other.
    "0 16 */2 * sat",
    "1 1 1-7 * */7",
    "1 1 */100,1-7 * MON",
    "0 0 */2 * 1",
    "0 12 10,* * 2",  # either rule: every day (croniter reads it as Tuesdays)
]
ZONES = ["UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kolkata"]
START = datetime(2024, 1, 1, tzinfo=UTC)
# Rows whose N is capped (empty: every row uses -n).  1,000 Feb 29ths reach the year ~6150, still
# within datetime's range.
SPARSE_N: dict[str, int] = {}


def run_dcron(expression: str, tz: str, n: int) -> Callable[[], datetime]:
    schedule = parse_schedule(expression, tz)

    def run() -> datetime:
        at = START
        for _ in range(n):
            at = schedule.next_after(at)
        return at

    return run


def run_croniter(expression: str, tz: str, n: int) -> Callable[[], datetime]:
    start = START.astimezone(ZoneInfo(tz))
    seconds_first = len(expression.split()) == 6

    def run() -> datetime:
        cron = croniter(expression, start, second_at_beginning=seconds_first, implement_cron_bug=True)
        at = start
        for _ in range(n):
            at = cron.get_next(datetime)
        return at

    return run


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}


def measure(
    runs: list[Callable[[], datetime]],
    budget: float,
    min_reps: int,
    max_reps: int,
    clock: Callable[[], float],
) -> list[float]:
    """The fastest of several runs of each, in seconds; the runs alternate, so both see the same load."""
    best = [float("inf")] * len(runs)
    spent = 0.0
    reps = 0
    while reps < min_reps or (spent < budget and reps < max_reps):
        for index, run in enumerate(runs):
            began = clock()
            run()
            elapsed = clock() - began
            best[index] = min(best[index], elapsed)
            spent += elapsed
        reps += 1
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="fire times per row (default 1000)")
    parser.add_argument("--budget", type=float, default=0.5, help="seconds spent per row")
    parser.add_argument("--min-reps", type=int, default=3)
    parser.add_argument("--max-reps", type=int, default=50)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="what times a run")
    parser.add_argument("--expressions", nargs="*", default=EXPRESSIONS)
    parser.add_argument("--zones", nargs="*", default=ZONES)
    args = parser.parse_args()
    clock = CLOCKS[args.clock]

    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"date:    {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc={os.cpu_count()}; "
        f"Python {platform.python_version()}; croniter {version('croniter')}; "
        f"tzdata {_tzdata_version()}"
    )
    print(f"libdcron: {Path(libdcron.__file__).parent}")
    print(
        f"start:   {START.isoformat()}; best of >= {args.min_reps} alternating runs, ~{args.budget}s per row, "
        f"{args.clock} clock"
    )
    print()
    header = f"{'expression':<20} {'zone':<20} {'N':>5} {'dcron s':>9} {'croniter s':>10} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    began = time.perf_counter()
    worst, worst_row = 0.0, "-"
    notes: list[str] = []
    for expression in args.expressions:
        for tz in args.zones:
            n = min(args.n, SPARSE_N.get(expression, args.n))
            ours_run = run_dcron(expression, tz, n)
            last = ours_run()  # warm per-zone caches, as a running leader has them
            if expression.startswith("@every"):
                (ours,) = measure([ours_run], args.budget, args.min_reps, args.max_reps, clock)
                theirs_text, ratio_text = "-", "-"
            else:
                theirs_run = run_croniter(expression, tz, n)
                if theirs_run() != last:
                    notes.append(f"{expression!r} {tz}: the N-th instants differ (croniter's rules differ)")
                ours, theirs = measure(
                    [ours_run, theirs_run], args.budget, args.min_reps, args.max_reps, clock
                )
                theirs_text, ratio_text = f"{theirs:10.4f}", f"{ours / theirs:6.2f}"
                if ours / theirs > worst:
                    worst, worst_row = ours / theirs, f"{expression!r} {tz}"
            print(
                f"{expression:<20} {tz:<20} {n:>5} {ours:9.4f} {theirs_text:>10} {ratio_text:>6}", flush=True
            )
    print()
    for note in notes:
        print(f"note: {note}")
    print(f"largest ratio: {worst:.2f} ({worst_row}); bench took {time.perf_counter() - began:.1f} s")
    return 0


def _tzdata_version() -> str:
    try:
        return version("tzdata")
    except Exception:
        return "system"


if __name__ == "__main__":
    sys.exit(main())
