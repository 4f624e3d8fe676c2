"""Where a process's time goes, from a py-spy raw profile: the functions with the most samples,
on their own (self) and with what they call (inclusive).

Profile a ``dcrond`` under load (``bench/throughput_bench.py`` running in another shell), then
summarise::

    pip install py-spy
    py-spy record -p PID -d 10 -r 250 --gil -f raw -o /tmp/dcrond.txt --nonblocking
    python bench/pyspy_top.py /tmp/dcrond.txt --top 40

``--gil`` samples only the thread holding the interpreter lock: Python work, the part of a
``dcrond`` that one core bounds.  Without it every running thread is sampled (waits in system
calls, ``fsync``, ``rmtree``, included).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

FRAME = re.compile(r"(?P<func>.*) \((?P<file>.*):(?P<line>\d+)\)$")


def short(frame: str) -> str:
    """``func (module.py)`` of a py-spy frame ``func (path/module.py:LINE)``."""
    m = FRAME.match(frame)
    return f"{m['func']} ({m['file'].rsplit('/', 1)[-1]})" if m else frame


def summarise(lines: list[str]) -> tuple[int, Counter[str], Counter[str]]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        line = line.rstrip()
        if not line or " " not in line:
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [short(f) for f in stack.split(";")[1:]]  # the first is the thread
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    return total, own, inclusive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="a py-spy record -f raw file")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    with open(args.profile) as file:
        total, own, inclusive = summarise(file.readlines())
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} samples")
    for title, counts in (("self", own), ("inclusive", inclusive)):
        print(f"-- {title}")
        for name, n in counts.most_common(args.top):
            print(f"{n:7d} {n / total:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
