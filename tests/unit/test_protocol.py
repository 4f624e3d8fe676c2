"""The wire protocol's encoding and validation (pure logic)."""

from __future__ import annotations

import pytest

from libdcron.errors import NotFoundError, ProtocolError, RemoteError
from libdcron.transport import protocol
from libdcron.transport.protocol import HEADER, Command


def test_request_round_trip() -> None:
    frames = protocol.encode_request(Command.SHOW, {"name": "a"})
    assert protocol.decode_request(frames) == (Command.SHOW, {"name": "a"})


def test_the_command_table() -> None:
    public = {"PING": 0x01, "STATUS": 0x02, "SCHEDULE": 0x10, "ENABLE": 0x11, "DISABLE": 0x12, "LIST": 0x13}
    public |= {"SHOW": 0x14, "EXECUTIONS": 0x15, "LOGS": 0x16, "RUN": 0x17, "SCHEDULE_MANY": 0x18, "TAIL": 0x19}
    nodes = {"DISPATCH": 0x20, "RUN_NOW": 0x21, "FINISHED": 0x22}
    assert {c.name: c.value for c in Command} == public | nodes
    assert {c.name for c in protocol.NODE_COMMANDS} == set(nodes)  # TAIL is public
    frames = protocol.encode_request(Command.TAIL, {"execution": "x@y#1", "offset": 0})
    assert frames[1] == b"\x19" and protocol.decode_request(frames)[0] is Command.TAIL


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([HEADER, bytes([Command.PING])], "expected 3 frames"),
        ([b"HTTP/1.1", bytes([Command.PING]), b"{}"], "unknown protocol header"),
        ([b"DCRON/2", bytes([Command.PING]), b"{}"], "unknown protocol header"),
        ([HEADER, b"\x01\x02", b"{}"], "one byte"),
        ([HEADER, b"\xee", b"{}"], "unknown command 0xee"),
        ([HEADER, bytes([Command.PING]), b"\xff\xfe"], "not UTF-8 JSON"),
        ([HEADER, bytes([Command.PING]), b"[1, 2]"], "must be a JSON object"),
        ([HEADER, bytes([Command.PING]), b"{"], "not UTF-8 JSON"),
        ([HEADER, bytes([Command.PING]), b"x" * (protocol.MAX_BODY + 1)], "exceeds the limit"),
    ],
)
def test_malformed_requests_are_rejected_with_a_reason(frames: list[bytes], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        protocol.decode_request(frames)


def test_error_reply_raises_the_same_error_class() -> None:
    frames = protocol.encode_error(NotFoundError("no job named 'x'"))
    with pytest.raises(NotFoundError, match="no job named 'x'"):
        protocol.decode_reply(frames)


def test_unknown_error_kind_becomes_remote_error() -> None:
    frames = [HEADER, b"\x01", b'{"error": "Weird", "message": "boom"}']
    with pytest.raises(RemoteError, match="boom"):
        protocol.decode_reply(frames)


def test_non_dcron_exception_is_reported_as_internal() -> None:
    frames = protocol.encode_error(KeyError("k"))
    with pytest.raises(Exception, match="internal error"):
        protocol.decode_reply(frames)


def test_malformed_reply() -> None:
    with pytest.raises(ProtocolError):
        protocol.decode_reply([b"nope"])


def test_a_z85_key_with_a_slash_is_a_key_not_a_path() -> None:
    import zmq

    from libdcron.transport.keys import load_public, load_secret

    for _ in range(200):  # Z85 has "/" in its alphabet: find a key pair whose texts hold one
        public, secret = zmq.curve_keypair()
        if b"/" in public and b"/" in secret:
            break
    else:
        raise AssertionError("no key with a slash in 200 tries")
    assert load_public(public.decode(), "server key") == public
    assert load_secret(secret.decode(), "client key").public == public
