"""Fuzzing every command's body validation on a live embedded node (in process, no sockets).

Whatever JSON object a peer sends with any command, the node answers with a reply or raises a
:class:`DcronError` (an error reply); nothing else escapes, nothing runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libdcron.config import NodeSettings
from libdcron.errors import DcronError
from libdcron.node import Node
from libdcron.transport.protocol import Command

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "name", "schedule", "interpreter", "script", "script_content", "script_sha256", "timeout", "tz",
        "update", "max_attempts", "count", "limit", "page", "execution", "offset", "length", "job",
        "fire_time", "attempt", "manual", "leader",
    ]
) | st.text(max_size=10)  # fmt: skip
BODIES = st.dictionaries(KEYS, VALUES, max_size=8)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    n = Node(NodeSettings(data_dir=root / "data", listen="tcp://127.0.0.1:0", node_id="fuzz"))
    n.start()
    yield n
    n.stop(grace=1)


@pytest.mark.parametrize("command", [c.name for c in Command])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_every_command_validates_any_body(node: Node, command: str, body: dict[str, object]) -> None:
    try:
        reply = node.api.handle(command, body)
    except DcronError:
        return
    assert isinstance(reply, dict)


def test_nothing_ran(node: Node) -> None:
    assert node.worker.running() == []


def test_every_command_of_the_protocol_is_served(node: Node) -> None:
    assert set(node.api.commands) == {c.name for c in Command}
