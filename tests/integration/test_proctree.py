"""A run's whole process tree ends with the run, on real processes: cgroup v2, and marker fallback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dcron_plugins.interpreters import PathInterpreter
from dcron_plugins.storage_local import LocalObjectStore
from dcron_plugins.store_sqlite import SQLiteDocumentStore

from libdcron.abc import EXECUTIONS, Interpreter, ObjectStore
from libdcron.model import Job, format_instant, parse_instant, utcnow
from libdcron.proctree import MARKER_VAR, ProcessTree, RunTree, marked_pids, node_key
from libdcron.recorder import Recorder
from libdcron.testing import wait_for
from libdcron.worker import Worker

# The script detaches two children: one in the background with its output elsewhere, one through
# setsid and a double fork (a new session, its parent gone); it waits for both pid files.
DETACH = """\
sleep 300 >/dev/null 2>&1 &
echo $! > {dir}/bg.pid
setsid sh -c 'sleep 300 >/dev/null 2>&1 & echo $! > {dir}/dbl.pid' >/dev/null 2>&1 &
while [ ! -s {dir}/dbl.pid ]; do sleep 0.01; done
echo $$ > {dir}/main.pid
echo detached
"""


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by a slow init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def pid_of(path: Path) -> int:
    text: str = wait_for(lambda: path.exists() and path.read_text().endswith("\n") and path.read_text())
    return int(text)


def marked(key: str) -> set[int]:
    return marked_pids(lambda marker: marker.startswith(f"{key}:"))


def cgroups_available(tmp_path: Path) -> bool:
    tree = ProcessTree(node_key(tmp_path, "probe"), "probe")
    run = tree.run()
    ok = run.cgroup is not None
    run.close()
    tree.close()
    return ok


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[[bool], tuple[Worker, SQLiteDocumentStore]]]:
    store = SQLiteDocumentStore(str(tmp_path / "db.sqlite3"))
    store.open()
    objects: ObjectStore = LocalObjectStore(f"file://{tmp_path / 'objects'}")

    def resolve(url: str) -> ObjectStore:
        return objects

    recorder = Recorder(store, resolve, tmp_path / "outbox")
    interps: dict[str, Interpreter] = {"sh": PathInterpreter("sh", "sh", ".sh")}
    workers: list[Worker] = []

    def make(cgroups: bool) -> tuple[Worker, SQLiteDocumentStore]:
        tree = ProcessTree(node_key(tmp_path, "w1"), "inc1", cgroups=cgroups)
        worker = Worker(
            "w1", recorder, objects, resolve, lambda: interps, tmp_path / "node", containment=tree
        )
        workers.append(worker)
        return worker, store

    yield make
    for worker in workers:
        worker.stop(grace=1)
    recorder.close()
    store.close()


def run_job(worker: Worker, store: SQLiteDocumentStore, script: str, timeout: int = 0) -> dict[str, Any]:
    """Run ``script`` once now; return its execution document once finished."""
    objects = worker.objects
    url = objects.url_for("scripts/job.sh")
    objects.put_bytes(script.encode(), url)
    job = Job("job", "0 0 1 1 *", "sh", url, timeout=timeout)
    fire = utcnow().replace(microsecond=0) + timedelta(seconds=1)
    body = {"job": job.to_doc(), "fire_time": format_instant(fire), "attempt": 1}
    assert worker.dispatch(body)["accepted"]

    def finished() -> dict[str, Any] | None:
        docs = [d for d in store.find(EXECUTIONS, {"job": "job"}) if d["status"] != "running"]
        return docs[0] if docs else None

    doc: dict[str, Any] = wait_for(finished, 15)
    return doc


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "marker"])
def test_detached_children_end_with_a_successful_run(
    make_worker: Callable[[bool], tuple[Worker, SQLiteDocumentStore]], tmp_path: Path, cgroups: bool
) -> None:
    if cgroups and not cgroups_available(tmp_path):
        pytest.skip("this host lets no cgroup v2 be made")
    worker, store = make_worker(cgroups)
    assert worker.containment.uses_cgroups is cgroups
    doc = run_job(worker, store, DETACH.format(dir=tmp_path))
    assert doc["status"] == "succeeded" and doc["exit_code"] == 0, doc
    children = [pid_of(tmp_path / "bg.pid"), pid_of(tmp_path / "dbl.pid")]
    wait_for(lambda: all(gone(pid) for pid in children), 5, message="the run's processes exited")  # (SIGKILLed: exiting)
    assert not marked(worker.containment.node_key)
    # The copier no longer waits 5 s for a detached child to close the log pipe.
    took = (parse_instant(doc["ended"]) - parse_instant(doc["started"])).total_seconds()
    assert took < 2.0, took
    assert worker.objects.read_range(doc["log"], 0, 100) == b"detached\n"


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "marker"])
def test_detached_children_end_at_the_timeout(
    make_worker: Callable[[bool], tuple[Worker, SQLiteDocumentStore]], tmp_path: Path, cgroups: bool
) -> None:
    if cgroups and not cgroups_available(tmp_path):
        pytest.skip("this host lets no cgroup v2 be made")
    worker, store = make_worker(cgroups)
    started = time.monotonic()
    doc = run_job(worker, store, DETACH.format(dir=tmp_path) + "sleep 300\n", timeout=1)
    assert doc["status"] == "timeout", doc
    pids = [pid_of(tmp_path / name) for name in ("main.pid", "bg.pid", "dbl.pid")]
    wait_for(lambda: all(gone(pid) for pid in pids), 5, message="the run's processes exited")  # (SIGKILLed: exiting)
    assert not marked(worker.containment.node_key)
    assert time.monotonic() - started < 6  # the fire instant (<= 1 s), the timeout, no full grace


def test_runs_are_put_in_their_own_cgroup_when_the_host_allows_it(
    make_worker: Callable[[bool], tuple[Worker, SQLiteDocumentStore]], tmp_path: Path
) -> None:
    if not cgroups_available(tmp_path):
        pytest.skip("this host lets no cgroup v2 be made")
    worker, store = make_worker(True)
    tree = worker.containment
    assert tree.node_cgroup is not None
    mount = tree.node_cgroup.parent.parent
    script = f"echo $$ > {tmp_path}/main.pid\nenv -i sleep 300 &\necho $! > {tmp_path}/bare.pid\nsleep 300\n"
    objects = worker.objects
    url = objects.url_for("scripts/cg.sh")
    objects.put_bytes(script.encode(), url)
    job = Job("cg", "0 0 1 1 *", "sh", url, timeout=2)
    fire = utcnow().replace(microsecond=0) + timedelta(seconds=1)
    assert worker.dispatch({"job": job.to_doc(), "fire_time": format_instant(fire), "attempt": 1})["accepted"]
    main, bare = pid_of(tmp_path / "main.pid"), pid_of(tmp_path / "bare.pid")
    # The main process is in <mount>/dcron/<node-key>/<incarnation>/<run-token>, with the marker.
    line = next(x for x in Path(f"/proc/{main}/cgroup").read_text().splitlines() if x.startswith("0::"))
    cgroup = mount / line.removeprefix("0::").lstrip("/")
    assert cgroup.parent == tree.node_cgroup / "inc1", cgroup
    assert str(main) in (cgroup / "cgroup.procs").read_text().split()
    environ = Path(f"/proc/{main}/environ").read_bytes().split(b"\0")
    assert f"{MARKER_VAR}={tree.node_key}:inc1:{cgroup.name}".encode() in environ
    # A child that dropped its environment (once `env -i` has exec'd) has no marker: only the
    # cgroup knows it.
    wait_for(
        lambda: bare not in marked(tree.node_key) and b"sleep" in Path(f"/proc/{bare}/cmdline").read_bytes()
    )
    assert str(bare) in (cgroup / "cgroup.procs").read_text().split()
    doc = wait_for(
        lambda: next((d for d in store.find(EXECUTIONS, {"job": "cg"}) if d["status"] != "running"), None)
    )
    assert doc["status"] == "timeout"
    assert gone(main) and gone(bare)
    # Emptied: removed, or kept (empty) for the node's next run and removed when it stops.
    wait_for(lambda: not cgroup.exists() or not (cgroup / "cgroup.procs").read_text().split(), 2)
    worker.stop()
    assert not cgroup.exists()


def _start(run: RunTree, script: str) -> subprocess.Popen[bytes]:
    return run.popen(
        ["sh", "-c", script], env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def test_start_up_sweep_kills_an_earlier_incarnation_only(tmp_path: Path) -> None:
    key, other_key = node_key(tmp_path, "n1"), node_key(tmp_path, "n2")
    cgroups = cgroups_available(tmp_path)
    # A crashed incarnation: a run in a cgroup (if the host allows) with detached children, one of
    # which dropped its environment, and a run of the same node contained without a cgroup.
    crashed = ProcessTree(key, "old", cgroups=cgroups)
    crashed_plain = ProcessTree(key, "older", cgroups=False)
    current = ProcessTree(key, "new", cgroups=cgroups)
    other = ProcessTree(other_key, "old", cgroups=cgroups)
    d = tmp_path
    detach = (
        "sleep 300 >/dev/null 2>&1 &\n"
        f"setsid sh -c 'sleep 300 >/dev/null 2>&1 & echo $! > {d}/dbl.pid' >/dev/null 2>&1\n"
        + (f"env -i sleep 300 >/dev/null 2>&1 &\necho $! > {d}/bare.pid\n" if cgroups else "")
        + "exec sleep 300\n"
    )
    old_run = crashed.run()
    procs = [_start(old_run, detach), _start(crashed_plain.run(), "exec sleep 300")]
    keep_runs = [current.run(), other.run()]
    keep = [_start(run, "exec sleep 300") for run in keep_runs]
    try:
        pid_of(d / "dbl.pid")
        # Once settled, the marker finds five processes of this node: the crashed run's main
        # process and its two marked children, the plain run, and the current incarnation's run.
        wait_for(lambda: len(marked(key)) == 5)
        old = marked(key) - {keep[0].pid}
        if cgroups:  # and the cgroup knows the crashed run's unmarked child
            old.add(pid_of(d / "bare.pid"))
            assert old_run.cgroup is not None and old_run.cgroup.exists()
        assert len(old) == (5 if cgroups else 4)
        killed = current.sweep_leftovers()
        assert killed == len(old)
        wait_for(lambda: all(gone(pid) for pid in old), 5, message="the run's processes exited")  # (SIGKILLed: exiting)
        assert [p.poll() for p in keep] == [None, None]
        assert not gone(keep[0].pid) and not gone(keep[1].pid)
        assert marked(key) == {keep[0].pid}
        if cgroups:
            assert current.node_cgroup is not None
            assert sorted(p.name for p in current.node_cgroup.iterdir() if p.is_dir()) == ["new"]
        assert current.sweep_leftovers() == 0
    finally:
        for run in keep_runs:
            run.end(None, 0.5)
        for proc in [*procs, *keep]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for tree in (crashed, crashed_plain, current, other):
            tree.close()


@pytest.mark.parametrize("mount", ["missing", "not-a-cgroup"])
def test_a_cgroup_that_cannot_be_made_or_joined_falls_back_to_the_marker(tmp_path: Path, mount: str) -> None:
    # "missing": mkdir fails (as without permission); "not-a-cgroup": a plain folder, which takes
    # the mkdir but has no cgroup.procs to write the pid to.
    base = Path("/proc/no-such-folder") if mount == "missing" else tmp_path / "plain"
    if mount == "not-a-cgroup":
        base.mkdir()
    tree = ProcessTree(node_key(tmp_path, "n1"), "inc1", cgroup_mount=base)
    assert tree.uses_cgroups
    run = tree.run()
    proc = run.popen(
        ["sh", "-c", DETACH.format(dir=tmp_path)], env=dict(os.environ), stdout=subprocess.DEVNULL
    )
    try:
        assert proc.wait(10) == 0
        assert not tree.uses_cgroups and run.cgroup is None
        children = [pid_of(tmp_path / "bg.pid"), pid_of(tmp_path / "dbl.pid")]
        assert all(not gone(pid) for pid in children)
        left = run.end(None, 2.0)
        assert set(children) <= left
        wait_for(lambda: all(gone(pid) for pid in children), 5, message="the run's processes exited")  # (SIGKILLed: exiting)
    finally:
        run.end(None, 0)
        tree.close()


def test_a_cgroups_populated_flag_and_descendants_count_are_read_from_the_kernel(tmp_path: Path) -> None:
    if not cgroups_available(tmp_path):
        pytest.skip("this host lets no cgroup v2 be made")
    from libdcron.cgroup import cgroup_descendants, cgroup_pids, cgroup_populated

    tree = ProcessTree(node_key(tmp_path, "flags"), "inc1")
    run = tree.run()
    assert run.cgroup is not None
    try:
        assert cgroup_populated(run.cgroup) is False and cgroup_descendants(run.cgroup) == 0
        proc = _start(run, "exec sleep 300")  # (a forked sleep would outlive the kill below)
        wait_for(lambda: cgroup_populated(run.cgroup) is True)
        assert proc.pid in cgroup_pids(run.cgroup)
        (run.cgroup / "sub").mkdir()
        assert cgroup_descendants(run.cgroup) == 1
        proc.kill()
        proc.wait()
        wait_for(lambda: cgroup_populated(run.cgroup) is False)
        assert cgroup_pids(run.cgroup) == set()
        (run.cgroup / "sub").rmdir()
        assert cgroup_descendants(run.cgroup) == 0
        assert cgroup_populated(tmp_path) is None and cgroup_descendants(tmp_path) is None  # not a cgroup
    finally:
        run.end()
        tree.close()
