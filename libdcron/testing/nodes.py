"""A real node in process: :func:`embedded_node` starts one, :func:`client_for` talks to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..client import Client
from ..config import NodeSettings
from ..node import Node
from ..plugins import Plugins
from ..transport.keys import CLUSTER, LOCAL_CLIENT
from .waiting import wait_for

__all__ = ["client_for", "embedded_node"]


@contextmanager
def embedded_node(
    tmp_path: str | Path,
    *,
    timeout: float = 20.0,
    grace: float = 1.0,
    plugins: Plugins | None = None,
    **settings: Any,
) -> Iterator[Node]:
    """A real embedded :class:`~libdcron.node.Node`, started, leading; stopped on exit.

    It keeps its data in ``tmp_path/data`` (SQLite store, ``file://`` objects, file-lock election,
    CurveZMQ keys) and listens on ``tcp://127.0.0.1:0`` (a free port: see ``node.endpoint``) as
    node ``embedded``, unless ``settings`` (any :class:`~libdcron.config.NodeSettings` field) say
    otherwise.  Entering waits up to ``timeout`` seconds until the node leads and its leader has
    loaded the schedule; leaving stops the node, letting runs finish for ``grace`` seconds.
    """
    values: dict[str, Any] = {
        "data_dir": Path(tmp_path) / "data",
        "listen": "tcp://127.0.0.1:0",
        "node_id": "embedded",
    }
    values.update(settings)
    node = Node(NodeSettings(**values), plugins=plugins)
    try:
        node.start()
        wait_for(
            lambda: node.leader is not None and node.leader.ready.is_set(),
            timeout,
            message=f"embedded node {node.node_id} did not lead",
        )
        yield node
    finally:
        node.stop(grace=grace)


def client_for(node: Node, timeout: float = 10.0) -> Client:
    """A :class:`~libdcron.client.Client` of ``node`` holding the keys ``node`` made for local clients."""
    s = node.settings
    keys_dir = Path(s.keys_dir or Path(s.data_dir) / "keys")
    return Client(
        node.endpoint,
        timeout=timeout,
        data_dir=s.data_dir,
        key=str(keys_dir / f"{LOCAL_CLIENT}.key_secret"),
        server_key=str(keys_dir / f"{CLUSTER}.key"),
    )
