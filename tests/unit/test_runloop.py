"""The run loop's own descriptors: closed once, never written after the close."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from libdcron.runloop import RunLoop


def test_calls_and_timers_run_on_the_loop_thread() -> None:
    loop = RunLoop("test-loop")
    seen: list[str] = []
    done = threading.Event()
    loop.call_soon(lambda: seen.append(threading.current_thread().name))
    loop.call_at(0.0, done.set)
    assert done.wait(5.0)
    assert seen == ["test-loop"]
    loop.close()


def test_a_second_close_and_a_late_wake_up_leave_other_files_alone(tmp_path: Path) -> None:
    loop = RunLoop()
    wake_r, wake_w = loop._wake_r, loop._wake_w
    loop.close()
    # Files opened now take the lowest free numbers: the loop's, just given back.
    fds = [os.open(tmp_path / f"f{i}", os.O_RDWR | os.O_CREAT) for i in range(3)]
    try:
        assert {wake_r, wake_w} <= set(fds), "the test needs the numbers reused"
        loop.close()  # closes nothing of anyone else's
        loop.call_soon(lambda: None)  # a late wake-up writes nothing to the reused numbers
        for fd in fds:
            os.fstat(fd)  # still open
        assert [os.fstat(fd).st_size for fd in fds] == [0, 0, 0]
    finally:
        for fd in fds:
            os.close(fd)
