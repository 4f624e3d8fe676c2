"""Run real ``dcrond`` nodes and the real ``dcron`` CLI in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libdcron.testing import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NodeProc:
    name: str
    port: int
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "libdcron.daemon", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Cluster:
    """Nodes and the CLI in subprocesses.

    With ``shared_keys`` (the default) the cluster is set up as the README's "Security" section
    says for several hosts: one cluster key pair and one client key pair made with ``dcron keygen``
    in ``ROOT/keys``, given to every node (``DCRON_CLUSTER_KEY``, ``DCRON_CLIENT_KEYS``) and to the
    CLI (``DCRON_KEY``, ``DCRON_SERVER_KEY``), so nodes may have data folders of their own.
    Without it, nodes make their keys in the shared data folder and the CLI finds them there.
    """

    root: Path
    extra_args: list[str] = field(default_factory=list)
    env_extra: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeProc] = field(default_factory=list)
    shared_keys: bool = True

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def keys_dir(self) -> Path:
        keys = self.root / "keys"
        if not (keys / "client.key_secret").exists():
            base = {k: v for k, v in os.environ.items() if not k.startswith("DCRON_")}
            for name in ("cluster", "client"):
                subprocess.run(
                    [sys.executable, "-m", "libdcron.cli", "keygen", name, "--dir", str(keys)],
                    env=base,
                    check=True,
                    capture_output=True,
                )
        return keys

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DCRON_")}
        if self.shared_keys:
            keys = self.keys_dir
            env["DCRON_CLUSTER_KEY"] = str(keys / "cluster.key_secret")
            env["DCRON_CLIENT_KEYS"] = str(keys / "client.key")
            env["DCRON_KEY"] = str(keys / "client.key_secret")
            env["DCRON_SERVER_KEY"] = str(keys / "cluster.key")
        else:
            env["DCRON_DATA_DIR"] = str(self.data_dir)
        env.update(self.env_extra)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def add(self, name: str, *args: str) -> NodeProc:
        port = free_port()
        node = NodeProc(
            name,
            port,
            [
                "--data-dir",
                str(self.data_dir),
                "--listen",
                f"tcp://127.0.0.1:{port}",
                "--node-id",
                name,
                *self.extra_args,
                *args,
            ],
            self.env(),
            self.root / f"{name}.log",
        )
        self.nodes.append(node)
        node.start()
        return node

    def endpoints(self) -> str:
        return ",".join(n.endpoint for n in self.nodes if n.alive())

    def dcron(
        self,
        *args: str,
        check: bool = True,
        endpoint: str | None = None,
        timeout: float = 60,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = self.env()
        if endpoint != "":  # "" leaves DCRON_ENDPOINT unset
            env["DCRON_ENDPOINT"] = endpoint or self.endpoints()
        env.update(extra_env or {})
        result = subprocess.run(
            [sys.executable, "-m", "libdcron.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"dcron {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def json(self, *args: str, endpoint: str | None = None) -> Any:
        return json.loads(self.dcron(*args, "--json", endpoint=endpoint).stdout)

    def leader(self) -> NodeProc:
        def find() -> NodeProc | None:
            for node in self.nodes:
                if not node.alive():
                    continue
                try:
                    status = self.json("status", endpoint=node.endpoint)
                except AssertionError:
                    return None
                if status["is_leader"]:
                    return node
            return None

        found: NodeProc = wait_for(find, 20)
        return found

    def wait_ready(self, count: int | None = None) -> None:
        want = count if count is not None else len(self.nodes)

        def ready() -> bool:
            try:
                status = self.json("status")
            except AssertionError:
                return False
            return status["leader"] is not None and len(status["members"]) >= want

        wait_for(ready, 30)

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                try:
                    node.terminate(20)
                except subprocess.TimeoutExpired:
                    node.kill()

    def logs(self) -> str:
        return "\n".join(f"----- {n.name} -----\n{n.log()[-4000:]}" for n in self.nodes)
