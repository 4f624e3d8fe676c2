"""Fuzzing the frame decoder: whatever arrives, the result is a request or a ProtocolError."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from libdcron.errors import ProtocolError
from libdcron.transport import protocol

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=40,
)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_any_frames_decode_or_raise_protocol_error(frames: list[bytes]) -> None:
    try:
        command, body = protocol.decode_request(frames)
    except ProtocolError:
        return
    assert isinstance(command, protocol.Command) and isinstance(body, dict)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=256))
def test_any_body_bytes_decode_to_an_object_or_raise_protocol_error(data: bytes) -> None:
    try:
        body = protocol.decode_body(data)
    except ProtocolError:
        return
    assert isinstance(body, dict)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), JSON, max_size=5))
def test_json_objects_round_trip_within_the_depth_limit(body: dict[str, object]) -> None:
    frame = json.dumps(body).encode()
    if _depth(body) > protocol.MAX_DEPTH:
        try:
            protocol.decode_body(frame)
        except ProtocolError:
            return
        raise AssertionError("a body deeper than MAX_DEPTH was accepted")
    assert protocol.decode_body(frame) == json.loads(frame)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=protocol.MAX_DEPTH + 1, max_value=100_000), st.sampled_from("[{"))
def test_deep_nesting_is_refused_without_recursion(depth: int, opener: str) -> None:
    inner = "[" * depth + "]" * depth if opener == "[" else '{"a":' * depth + "1" + "}" * depth
    frame = ('{"x":' + inner + "}").encode()
    try:
        protocol.decode_body(frame)
    except ProtocolError as exc:
        assert "deeper than" in str(exc)
    else:
        raise AssertionError("accepted")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50))
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    body = {"s": "[" * 40 + text + "{" * 40}
    assert protocol.decode_body(json.dumps(body).encode()) == body
