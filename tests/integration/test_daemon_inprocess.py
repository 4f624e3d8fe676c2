"""``dcrond`` in process: settings from a file, the environment and flags; serving; SIGTERM; exit codes."""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from libdcron import daemon
from libdcron.client import Client
from libdcron.config import NodeSettings
from libdcron.testing import wait_for


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_settings_merge_file_environment_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "dcron.toml"
    config.write_text('[node]\ncapacity = 2\nlisten = "tcp://127.0.0.1:7000"\n[node.options]\nx = "1"\n')
    settings = daemon._settings(str(config), {"capacity": 5, "data_dir": str(tmp_path)}, ("y=2",))
    assert settings.capacity == 5 and settings.listen == "tcp://127.0.0.1:7000"
    assert settings.options == {"x": "1", "y": "2"}
    assert settings.keys_dir == tmp_path.resolve() / "keys"


def test_serve_answers_and_stops_on_sigterm_with_exit_0(tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{_port()}"
    settings = NodeSettings(data_dir=tmp_path / "data", listen=endpoint, node_id="inproc").resolved()
    pidfile = tmp_path / "dcrond.pid"
    answers: list[str] = []

    def poke() -> None:
        def ping() -> bool:
            try:
                with Client(endpoint, timeout=0.5, data_dir=tmp_path / "data") as c:
                    answers.append(c.call("STATUS")["node"])
                    return True
            except Exception:
                return False

        wait_for(ping, 20)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=poke, daemon=True)
    thread.start()
    try:
        assert daemon._serve(settings, pidfile) == daemon.EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    thread.join(5)
    assert answers == ["inproc"]
    assert not pidfile.exists()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--capacity", "0"], daemon.EXIT_CONFIG),
        (["--listen", "udp://x"], daemon.EXIT_CONFIG),
        (["--store", "ftp://x"], daemon.EXIT_CONFIG),
        (["--nope"], daemon.EXIT_USAGE),
    ],
)
def test_bad_configuration_exits_with_its_code(tmp_path: Path, args: list[str], code: int) -> None:
    runner = CliRunner()
    result = runner.invoke(daemon.dcrond, ["--data-dir", str(tmp_path), *args], env={"DCRON_OPTIONS": ""})
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
