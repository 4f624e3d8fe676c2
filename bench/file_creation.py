"""What making a file costs where files were deleted lately, as a node's logs are.

A ``dcrond`` makes one file a run (its log, staged before the fire instant); its retention, like
every benchmark run's clean-up, deletes them by the thousand.  On ext4 an inode freed lately is
not given out again at once, and the search for a free one looks at each such inode it passes
(``recently_deleted`` in the kernel's profile), for every new file.  This makes ``--rounds``
rounds of ``--files`` empty files, by ``--threads`` threads, in one folder or spread over
``--folders`` folders, prints each round's CPU and wall time per file, and deletes them all at
its end, as a benchmark run does: run it twice in a row to see what the second run pays::

    python bench/file_creation.py --dir /var/tmp
    python bench/file_creation.py --dir /var/tmp
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path


def make(folders: list[Path], files: int, threads: int, tag: str) -> tuple[float, float]:
    """Make ``files`` empty files over ``folders`` from ``threads`` threads: (CPU s, wall s)."""
    share = files // threads

    def work(t: int) -> None:
        for i in range(share):
            path = folders[(t * share + i) % len(folders)] / f"{tag}-{t}-{i}"
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    cpu, wall = time.process_time(), time.perf_counter()
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where [the system's temp]")
    parser.add_argument("--files", type=int, default=12000, help="files made each round [12000]")
    parser.add_argument("--rounds", type=int, default=4, help="rounds [4]")
    parser.add_argument("--threads", type=int, default=4, help="threads making them (a worker has 4) [4]")
    parser.add_argument("--folders", type=int, default=1, help="folders they are spread over [1]")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dcron-file-creation-", dir=args.dir))
    try:
        folders = [base / f"{i:x}" for i in range(args.folders)]
        for folder in folders:
            folder.mkdir()
        print(f"{args.dir}: {args.threads} thread(s) making files in {args.folders} folder(s):")
        for n in range(args.rounds):
            cpu, wall = make(folders, args.files, args.threads, f"r{n}")
            made = args.files // args.threads * args.threads
            print(f"  round {n + 1}: {cpu / made * 1000:.3f} ms CPU, {wall / made * 1000:.3f} ms wall a file")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
