"""A clean stop of ``dcrond`` (SIGTERM, nothing wrong) logs at INFO: no WARNING or worse."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from libdcron import daemon
from libdcron.client import Client
from libdcron.config import NodeSettings
from libdcron.testing import wait_for


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_clean_stop_logs_nothing_above_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    endpoint = f"tcp://127.0.0.1:{_port()}"
    settings = NodeSettings(data_dir=tmp_path / "data", listen=endpoint, node_id="quiet").resolved()

    def poke() -> None:
        def up() -> bool:
            try:
                with Client(endpoint, timeout=0.5, data_dir=tmp_path / "data") as c:
                    return c.status()["leader"] is not None
            except Exception:
                return False

        wait_for(up, 20)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=poke, daemon=True)
    thread.start()
    caplog.set_level(logging.INFO)
    try:
        assert daemon._serve(settings, None) == daemon.EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    thread.join(5)
    messages = [r.getMessage() for r in caplog.records]
    stop = next(i for i, m in enumerate(messages) if m.startswith("received SIGTERM"))
    after = caplog.records[stop:]
    assert after[-1].getMessage() == "dcrond stopped"
    loud = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in after if r.levelno >= logging.WARNING]
    assert loud == []
