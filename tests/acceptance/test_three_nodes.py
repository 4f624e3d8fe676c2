"""Three real ``dcrond`` nodes on one host (embedded store, file-lock election): failover."""

from __future__ import annotations

import collections
import time
from pathlib import Path

from libdcron.model import parse_instant

from .harness import Cluster, wait_for


def test_sigkilled_leader_is_replaced_with_no_fire_time_lost_or_run_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    for name in ("n1", "n2", "n3"):
        cluster.add(name)
    cluster.wait_ready(3)
    ledger = tmp_path / "ledger.txt"
    script = tmp_path / "tick.sh"
    script.write_text(f'echo "$DCRON_FIRE_TIME $DCRON_ATTEMPT $DCRON_NODE" >> {ledger}\nsleep 0.2\n')
    cluster.dcron("schedule", "tick", "-c", "*/2 * * * * *", "-i", "sh", "-s", str(script))
    wait_for(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 3, 20)

    old = cluster.leader()
    # Each node took a share of the runs (round robin).
    nodes_seen = {line.split()[2] for line in ledger.read_text().splitlines()}
    assert len(nodes_seen) >= 2, nodes_seen
    killed_at = time.time()
    old.kill()
    new = cluster.leader()
    took = time.time() - killed_at
    assert new is not old
    assert took < 5.0, f"failover took {took:.1f}s"
    time.sleep(8)
    stop_at = time.time()

    rows = cluster.json("executions", "tick", "--limit", "500")["executions"]
    by_fire: dict[str, list[dict]] = collections.defaultdict(list)  # type: ignore[type-arg]
    for row in rows:
        by_fire[row["fire_time"]].append(row)
    fires = sorted(by_fire)
    first = parse_instant(fires[0]).timestamp()
    # Every even second from the first run until shortly before the end has a run.
    expected = [t for t in range(int(first), int(stop_at) - 2) if t % 2 == 0]
    have = {parse_instant(f).timestamp() for f in fires}
    missing = [t for t in expected if t not in have]
    assert not missing, f"fire times lost: {missing}\n{cluster.logs()}"

    lines = collections.Counter(tuple(line.split()[:2]) for line in ledger.read_text().splitlines())
    for fire, attempts in by_fire.items():
        succeeded = [a for a in attempts if a["status"] == "succeeded"]
        assert len(succeeded) <= 1, f"{fire} succeeded twice: {attempts}"
        numbers = sorted(a["attempt"] for a in attempts)
        assert numbers == list(range(1, len(numbers) + 1)), attempts
        for a in attempts:
            # A retry only follows a run lost with the killed node.
            if a["attempt"] > 1:
                prev = next(p for p in attempts if p["attempt"] == a["attempt"] - 1)
                assert prev["status"] == "lost" and prev["node"] == old.name, attempts
            # Every attempt that started ran exactly once: one ledger line per attempt.
            if a["status"] in ("succeeded", "failed"):
                assert lines[(fire, str(a["attempt"]))] == 1, (fire, a, lines)
    assert all(count == 1 for count in lines.values()), f"a run happened twice: {lines}"
    assert "elected leader" in new.log()
