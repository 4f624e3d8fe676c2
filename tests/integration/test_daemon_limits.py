"""A real ``dcrond`` started under the usual soft limit of 1,024 open files raises it for its
capacity (a node at --capacity 1000 would otherwise fail runs with EMFILE)."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from libdcron.daemon import FILES_BASE, FILES_PER_RUN
from libdcron.testing import wait_for


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _soft_open_files(pid: int) -> int | None:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return None


def test_dcrond_raises_its_open_files_limit_for_its_capacity(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FILES_BASE + FILES_PER_RUN * 1000
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail(f"this machine's hard limit of open files ({hard}) is below {need}")

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    env = {k: v for k, v in os.environ.items() if not k.startswith("DCRON_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "libdcron.daemon", "--data-dir", str(tmp_path / "data"),
         "--listen", f"tcp://127.0.0.1:{_port()}", "--http", "off", "--capacity", "1000"],
        preexec_fn=low_soft_limit, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _soft_open_files(proc.pid) == need or proc.poll() is not None, 30)
        assert proc.poll() is None, "dcrond exited"
        assert _soft_open_files(proc.pid) == need
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
