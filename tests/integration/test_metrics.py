"""A real embedded node's Prometheus metrics: runs by status, start lag, retries, leadership.

The jobs are scheduled once a year and run only when asked to (manual runs), so the counts are
exact: ``ok`` runs :data:`RUNS` times one after the other, ``bad`` fails once, and ``slow``
outlives its one-second timeout on attempt 1 (killed, ``timeout``) and succeeds on its retry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from libdcron.client import Client
from libdcron.node import Node
from libdcron.testing import client_for, embedded_node, wait_for

YEARLY = "0 0 1 1 *"
RUNS = 3


def samples(node: Node) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``node.metrics.render()``, by name and labels."""
    text, content_type = node.metrics.render()
    assert content_type.startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def value(node: Node, name: str, **labels: str) -> float | None:
    return samples(node).get((name, frozenset(labels.items())))


def ended(client: Client, name: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The executions of ``name`` once ``count`` of them have ended (read from the store)."""

    def done() -> list[dict[str, Any]] | None:
        rows = [e for e in client.executions(name, limit=100) if e["status"] != "running"]
        return rows if len(rows) >= count else None

    return wait_for(done, timeout, message=f"{count} ended executions of {name}")


def test_a_node_counts_its_runs_retries_and_leadership(tmp_path: Path) -> None:
    scripts = {
        "ok": "exit 0\n",
        "bad": "exit 3\n",
        "slow": '[ "$DCRON_ATTEMPT" = 1 ] && exec sleep 30\nexit 0\n',
    }
    with embedded_node(tmp_path, node_id="metrics") as node, client_for(node, timeout=5) as client:
        assert value(node, "dcron_is_leader") == 1
        assert value(node, "dcron_leader_changes_total", change="elected") == 1
        for name, text in scripts.items():
            path = tmp_path / f"{name}.sh"
            path.write_text(text)
            client.schedule(name, YEARLY, "sh", path, timeout=1 if name == "slow" else 0, max_attempts=2)
        wait_for(lambda: value(node, "dcron_jobs_loaded") == len(scripts), 5, message="3 jobs loaded")

        client.run("slow")
        client.run("bad")
        for i in range(1, RUNS + 1):
            client.run("ok")
            ended(client, "ok", i)
        assert [e["status"] for e in ended(client, "bad", 1)] == ["failed"]
        slow = ended(client, "slow", 2)
        assert sorted((e["attempt"], e["status"]) for e in slow) == [(1, "timeout"), (2, "succeeded")]

        found = samples(node)

        def get(name: str, **labels: str) -> float | None:
            return found.get((name, frozenset(labels.items())))

        assert get("dcron_runs_total", job="ok", status="succeeded") == RUNS
        assert get("dcron_runs_total", job="bad", status="failed") == 1
        assert get("dcron_runs_total", job="slow", status="timeout") == 1
        assert get("dcron_runs_total", job="slow", status="succeeded") == 1
        assert sum(v for (n, _), v in found.items() if n == "dcron_runs_total") == RUNS + 3
        assert get("dcron_retries_total") == 1
        assert get("dcron_lost_runs_total") == 0
        # Every run here was spawned, each within a minute of its fire time.
        assert get("dcron_run_start_lag_seconds_count") == RUNS + 3
        assert get("dcron_run_start_lag_seconds_bucket", le="60.0") == RUNS + 3
        assert get("dcron_is_leader") == 1 and get("dcron_jobs_loaded") == len(scripts)
        assert get("dcron_leader_changes_total", change="elected") == 1
        assert get("dcron_leader_changes_total", change="deposed") is None
        assert not [k for k, v in found.items() if k[0] == "dcron_dispatch_declines_total" and v]
        errors = [k for k, v in found.items() if "store_errors" in k[0] and k[0].endswith("_total") and v]
        assert not errors
        wait_for(lambda: value(node, "dcron_runs_in_progress") == 0, 5, message="no runs in progress")
        wait_for(lambda: value(node, "dcron_outbox_depth") == 0, 5, message="an empty outbox")
    # Stopped: the node stepped down and no longer leads.
    assert value(node, "dcron_is_leader") == 0 and value(node, "dcron_jobs_loaded") == 0
    assert value(node, "dcron_leader_changes_total", change="deposed") == 1


def test_fire_times_skipped_behind_a_long_run_are_counted(tmp_path: Path) -> None:
    # A job due every second whose run lasts 2.5 s: while it runs, the next fire time waits and is
    # then replaced by a newer one (no overlap runs only the newest), which counts as skipped.
    script = tmp_path / "long.sh"
    script.write_text("sleep 2.5\n")
    with embedded_node(tmp_path, node_id="skips") as node, client_for(node, timeout=5) as client:
        assert value(node, "dcron_skipped_fire_times_total") == 0
        client.schedule("long", "* * * * * *", "sh", script)
        wait_for(lambda: (value(node, "dcron_skipped_fire_times_total") or 0) >= 1, 10, message="a skip counted")
        client.disable("long")
        rows = ended(client, "long", 1)
        fires = sorted(e["fire_time"] for e in rows)
        assert len(set(fires)) == len(fires), "each fire time that ran, ran once"
