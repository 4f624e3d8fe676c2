"""A SIGKILLed node leaves its runs' processes behind; its next start kills them (real processes)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path

from .harness import Cluster, wait_for


def alive(pid: int) -> bool:
    """The process runs (a zombie that a slow init has not reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def pid_in(path: Path) -> int:
    text: str = wait_for(lambda: path.exists() and path.read_text().endswith("\n") and path.read_text(), 20)
    return int(text)


def test_a_restarted_node_kills_what_its_crashed_predecessor_left_running(
    cluster: Cluster, tmp_path: Path
) -> None:
    script = tmp_path / "orphan.sh"
    script.write_text(
        "sleep 300 >/dev/null 2>&1 &\n"
        f"echo $! > {tmp_path}/detached.pid\n"
        f"echo $$ > {tmp_path}/main.pid\n"
        "sleep 300\n"
    )
    node = cluster.add("solo")
    cluster.wait_ready()
    # One attempt only: the lost run is not retried, so no new processes appear after the restart.
    cluster.dcron(
        "schedule", "orphan", "-c", "0 0 1 1 *", "-i", "sh", "-s", str(script), "--max-attempts", "1"
    )
    cluster.dcron("run", "orphan")
    main, detached = pid_in(tmp_path / "main.pid"), pid_in(tmp_path / "detached.pid")
    ended = False
    try:
        node.kill()  # SIGKILL: the node cannot end its runs
        # The problem: the run goes on without its node, the interpreter and the detached child
        # alike (dcrond sets no PR_SET_PDEATHSIG, see libdcron/proctree.py).
        assert alive(main) and alive(detached)
        node.start()  # same data folder and node id: the same node key, a new incarnation
        wait_for(lambda: not alive(main) and not alive(detached), 10)
        ended = True
        cluster.wait_ready()
        found = wait_for(
            lambda: re.search(r"killed (\d+) leftover process\(es\) of an earlier", node.log()), 10
        )
        assert int(found.group(1)) >= 2  # the shell, its `sleep 300`, the detached `sleep 300`
        rows = cluster.json("executions", "orphan")["executions"]
        assert [r["attempt"] for r in rows] == [1]
    finally:
        for pid in () if ended else (main, detached):  # the test failed: do not leave them running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
