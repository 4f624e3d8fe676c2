"""The spawner helper process (libdcron.spawner) on real processes: start, output, exit codes,
a command that cannot start, a cgroup it cannot join, and the helper dying under its runs."""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from libdcron.spawner import RemoteProcess, Spawner
from libdcron.testing import wait_for


class Replies:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.process: RemoteProcess | None = None
        self.error: OSError | None = None

    def __call__(self, process: RemoteProcess | None, error: OSError | None) -> None:
        self.process, self.error = process, error
        self.done.set()


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    s = Spawner()
    yield s
    s.close()


def spawn(spawner: Spawner, script: str, cgroup: str | None = None) -> Replies:
    replies = Replies()
    spawner.spawn(["/bin/sh", "-c", script], dict(os.environ), "/tmp", cgroup, replies)
    assert replies.done.wait(10), "no reply from the spawner"
    return replies


def test_output_and_exit_code_come_back(spawner: Spawner) -> None:
    replies = spawn(spawner, "echo out; echo err >&2; exit 3")
    process = replies.process
    assert process is not None and replies.error is None
    ended = threading.Event()
    process.when_exited(ended.set)
    assert process.wait(10) == 3 and ended.wait(1)
    assert process.stdout.read() == b"out\nerr\n"
    called = threading.Event()
    process.when_exited(called.set)  # after the end: called at once
    assert called.is_set()


def test_many_runs_at_once(spawner: Spawner) -> None:
    runs = [spawn(spawner, f"exit {i % 5}") for i in range(50)]
    assert [r.process.wait(10) for r in runs if r.process] == [i % 5 for i in range(50)]


def test_a_command_that_cannot_start_is_an_error(spawner: Spawner) -> None:
    replies = Replies()
    spawner.spawn(["/no/such/interpreter", "x"], {}, None, None, replies)
    assert replies.done.wait(10)
    assert replies.process is None and replies.error is not None
    assert replies.error.errno == errno.ENOENT and "/no/such/interpreter" in str(replies.error)


def test_a_cgroup_it_cannot_join_runs_the_command_without_one(spawner: Spawner, tmp_path: Path) -> None:
    replies = spawn(spawner, "exit 0", cgroup=str(tmp_path / "not-a-cgroup"))
    assert replies.process is not None and replies.process.cgroup_failed
    assert replies.process.wait(10) == 0


def test_when_the_helper_dies_its_runs_are_ended_and_a_new_helper_starts(spawner: Spawner) -> None:
    replies = spawn(spawner, "sleep 300")
    process = replies.process
    assert process is not None
    helper = spawner._helper
    assert helper is not None
    os.kill(helper.pid, signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL
    wait_for(lambda: not os.path.exists(f"/proc/{process.pid}") or _zombie(process.pid), 5)
    again = spawn(spawner, "exit 7")
    assert again.process is not None and again.process.wait(10) == 7
    assert spawner._helper is not helper


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_run_is_born_in_its_cgroup_and_the_helper_goes_back_to_its_own(
    spawner: Spawner, tmp_path: Path
) -> None:
    from libdcron.proctree import ProcessTree, node_key

    tree = ProcessTree(node_key(tmp_path, "sp"), "inc1")
    run = tree.run()
    if run.cgroup is None:
        pytest.skip("this host lets no cgroup v2 be made")
    try:
        replies = spawn(spawner, "cat /proc/self/cgroup; sleep 0.2", cgroup=str(run.cgroup))
        process = replies.process
        assert process is not None and not process.cgroup_failed
        assert process.wait(10) == 0
        line = next(x for x in process.stdout.read().decode().splitlines() if x.startswith("0::"))
        assert line.endswith(f"/{run.cgroup.name}"), line
        helper = spawner._helper
        assert helper is not None
        own = Path(f"/proc/{helper.pid}/cgroup").read_text()
        assert run.cgroup.name not in own, "the helper left the run's cgroup"
    finally:
        run.close()
        tree.close()


def test_a_run_gets_the_base_environment_with_its_own_additions_also_after_a_new_helper() -> None:
    s = Spawner({"PATH": os.environ["PATH"], "BASE": "b", "CHANGED": "old"})
    try:
        for _ in range(2):
            replies = Replies()
            s.spawn(
                ["/bin/sh", "-c", 'echo "$BASE $CHANGED $OWN"'],
                {"CHANGED": "new", "OWN": "o"},
                None,
                None,
                replies,
            )
            assert replies.done.wait(10) and replies.process is not None
            assert replies.process.wait(10) == 0
            assert replies.process.stdout.read() == b"b new o\n"
            helper = s._helper
            assert helper is not None
            os.kill(helper.pid, signal.SIGKILL)  # the next run starts a new helper, which gets the base too
            helper.wait(10)
            wait_for(lambda: s._sock is None, 5)
    finally:
        s.close()


def test_a_run_holds_only_its_stdin_stdout_and_stderr_and_default_signals(spawner: Spawner) -> None:
    # (the glob's own folder stream is listed too, and closed by the time it is tested)
    script = 'for f in /proc/$$/fd/*; do [ -e "$f" ] && echo "fd ${f##*/}"; done; grep SigIgn /proc/$$/status'
    replies = spawn(spawner, script)
    process = replies.process
    assert process is not None and process.wait(10) == 0
    lines = process.stdout.read().decode().splitlines()
    assert [x for x in lines if x.startswith("fd ")] == ["fd 0", "fd 1", "fd 2"], lines
    ignored = int(next(x for x in lines if x.startswith("SigIgn:")).split()[1], 16)
    for sig in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):  # the helper ignores SIGINT, Python SIGPIPE
        assert not ignored & (1 << (sig - 1)), f"{sig.name} ignored in the run"


def test_a_program_is_looked_up_on_the_runs_path_and_a_missing_folder_is_an_error(
    spawner: Spawner, tmp_path: Path
) -> None:
    replies = Replies()
    spawner.spawn(["sh", "-c", "pwd"], {"PATH": "/usr/bin:/bin"}, str(tmp_path), None, replies)
    assert replies.done.wait(10) and replies.process is not None
    assert replies.process.wait(10) == 0 and replies.process.stdout.read().decode().strip() == str(tmp_path)
    for argv, cwd in ((["no-such-program-here"], None), (["sh", "-c", "true"], str(tmp_path / "gone"))):
        replies = Replies()
        spawner.spawn(argv, dict(os.environ), cwd, None, replies)
        assert replies.done.wait(10) and replies.process is None
        assert replies.error is not None and replies.error.errno == errno.ENOENT, replies.error


def test_a_burst_moves_the_helper_from_run_to_run_and_no_run_is_reported_with_the_helper_in_it(
    spawner: Spawner, tmp_path: Path
) -> None:
    from libdcron.cgroup import cgroup_pids
    from libdcron.proctree import ProcessTree, node_key

    tree = ProcessTree(node_key(tmp_path, "burst"), "inc1")
    runs = [tree.run() for _ in range(60)]
    if runs[0].cgroup is None:
        pytest.skip("this host lets no cgroup v2 be made")
    spawner.start()
    helper = spawner._helper
    assert helper is not None
    home = Path(f"/proc/{helper.pid}/cgroup").read_text()
    inside: list[str] = []  # the helper found in a run's cgroup as the run was reported
    lock = threading.Lock()

    class Checked(Replies):
        def __init__(self, cgroup: Path | None) -> None:
            super().__init__()
            self.cgroup = cgroup
            self.exited = threading.Event()

        def check(self, what: str) -> None:
            if self.cgroup is not None and helper.pid in cgroup_pids(self.cgroup):
                with lock:
                    inside.append(f"{what} {self.cgroup.name}")

        def __call__(self, process: RemoteProcess | None, error: OSError | None) -> None:
            self.check("started")
            if process is not None:
                process.when_exited(lambda: (self.check("exited"), self.exited.set()))
            super().__call__(process, error)

    script = "grep '^0::' /proc/self/cgroup"
    asked: list[tuple[str, Checked]] = []
    try:
        for i, run in enumerate(runs):  # sent back to back: the helper finds each next request waiting
            kind, cgroup, argv = "cgroup", run.cgroup, ["/bin/sh", "-c", script]
            if i % 15 == 7:
                kind, cgroup = "none", None
            elif i % 15 == 11:
                kind, cgroup = "unjoinable", tmp_path / f"not-a-cgroup-{i}"
            elif i % 15 == 13:
                kind, argv = "unstartable", ["/no/such/interpreter"]
            replies = Checked(run.cgroup if kind in ("cgroup", "unstartable") else None)
            spawner.spawn(argv, dict(os.environ), "/tmp", str(cgroup) if cgroup else None, replies)
            asked.append((kind, replies))
        for (kind, replies), run in zip(asked, runs, strict=True):
            assert replies.done.wait(10), "no reply from the spawner"
            if kind == "unstartable":
                assert replies.process is None and replies.error is not None
                assert replies.error.errno == errno.ENOENT
                continue
            process = replies.process
            assert process is not None and process.wait(10) == 0 and replies.exited.wait(10)
            assert process.cgroup_failed == (kind == "unjoinable")
            line = process.stdout.read().decode().strip()
            assert run.cgroup is not None
            assert line.endswith(f"/{run.cgroup.name}") == (kind == "cgroup"), (kind, line)
        assert inside == [], "the helper was still in a run's cgroup when that run was reported"
        wait_for(lambda: Path(f"/proc/{helper.pid}/cgroup").read_text() == home, 5)
        for run in runs:
            assert run.cgroup is not None and cgroup_pids(run.cgroup) == set()
    finally:
        for run in runs:
            run.close()
        tree.close()
