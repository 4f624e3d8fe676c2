"""The dcron wire protocol, in one place.

Every message is a ZeroMQ multipart message of exactly three frames:

=========  ==============================================================
frame      content
=========  ==============================================================
header     ``b"DCRON/1"`` -- protocol name and version
command    one byte: a :class:`Command` in a request, a :class:`Reply` code in a reply
body       a UTF-8 JSON object (at most :data:`MAX_BODY` bytes)
=========  ==============================================================

A ROUTER sees the REQ envelope (identity, empty delimiter) in front of these frames.  Anything
else -- wrong frame count, unknown version, unknown command, a body that is not a JSON object, a
body nested deeper than :data:`MAX_DEPTH` -- is answered with an ``ERROR`` reply whose body names
the problem; it never raises past the server.

Commands between nodes (:data:`NODE_COMMANDS`) are served only to peers that authenticated with a
node key; a client key gets a ``ForbiddenError`` reply.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BY_NAME, DcronError, ProtocolError, RemoteError

HEADER = b"DCRON/1"
MAX_BODY = 8 * 1024 * 1024
#: Sockets drop peers that send a larger message (ZMQ_MAXMSGSIZE); a little above MAX_BODY.
MAX_MESSAGE = MAX_BODY + 1024
#: Deepest nesting of arrays and objects a body may have; dcron's own bodies need 3.
MAX_DEPTH = 16


class Command(enum.IntEnum):
    # health
    PING = 0x01
    STATUS = 0x02
    # public API, served by every node
    SCHEDULE = 0x10
    ENABLE = 0x11
    DISABLE = 0x12
    LIST = 0x13
    SHOW = 0x14
    EXECUTIONS = 0x15
    LOGS = 0x16
    RUN = 0x17
    SCHEDULE_MANY = 0x18  # many jobs in one request, written in one bulk operation
    TAIL = 0x19  # a log as it grows: from the running node's spool, then from object storage
    # between nodes
    DISPATCH = 0x20  # leader -> worker: run this attempt at this fire instant
    RUN_NOW = 0x21  # any node -> leader: run a job now, outside its schedule
    FINISHED = 0x22  # worker -> leader: an attempt ended (also seen later through the store)


#: Commands only a node (a peer holding a node key) may send.
NODE_COMMANDS = frozenset({Command.DISPATCH, Command.RUN_NOW, Command.FINISHED})


class Reply(enum.IntEnum):
    OK = 0x00
    ERROR = 0x01


def encode_body(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def _depth_exceeds(frame: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit`` (checked before parsing)."""
    if frame.count(b"[") + frame.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _STRING.sub(b"", frame).translate(None, _NOT_BRACKETS):
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def decode_body(frame: bytes) -> dict[str, Any]:
    if len(frame) > MAX_BODY:
        raise ProtocolError(f"body of {len(frame)} bytes exceeds the limit of {MAX_BODY}")
    if _depth_exceeds(frame, MAX_DEPTH):
        raise ProtocolError(f"body nests arrays or objects deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(frame.decode(), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"body is not UTF-8 JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"body must be a JSON object, got {type(body).__name__}")
    return body


def encode_request(command: Command, body: Mapping[str, Any]) -> list[bytes]:
    return [HEADER, bytes([command]), encode_body(body)]


def decode_request(frames: Sequence[bytes]) -> tuple[Command, dict[str, Any]]:
    """Validate a request (without envelope); raise :class:`ProtocolError` saying what is wrong."""
    if len(frames) != 3:
        raise ProtocolError(f"expected 3 frames (header, command, body), got {len(frames)}")
    header, command, body = frames
    if header != HEADER:
        shown = header[:16]
        raise ProtocolError(f"unknown protocol header {shown!r}; this node speaks {HEADER.decode()}")
    if len(command) != 1:
        raise ProtocolError(f"command frame must be one byte, got {len(command)} bytes")
    try:
        cmd = Command(command[0])
    except ValueError:
        raise ProtocolError(f"unknown command 0x{command[0]:02x}") from None
    return cmd, decode_body(body)


def encode_reply(body: Mapping[str, Any]) -> list[bytes]:
    return [HEADER, bytes([Reply.OK]), encode_body(body)]


def encode_error(error: BaseException) -> list[bytes]:
    kind = type(error).__name__ if isinstance(error, DcronError) else "DcronError"
    message = str(error) if isinstance(error, DcronError) else f"internal error: {error!r}"
    return [HEADER, bytes([Reply.ERROR]), encode_body({"error": kind, "message": message})]


def decode_reply(frames: Sequence[bytes]) -> dict[str, Any]:
    """Return an OK reply's body; raise the error an ERROR reply carries."""
    if len(frames) != 3 or frames[0] != HEADER or len(frames[1]) != 1:
        raise ProtocolError("malformed reply from node (wrong frames or protocol version)")
    body = decode_body(frames[2])
    if frames[1][0] == Reply.OK:
        return body
    kind = str(body.get("error", "DcronError"))
    message = str(body.get("message", "unknown error"))
    cls = BY_NAME.get(kind)
    if cls is None:
        raise RemoteError(kind, message)
    raise cls(message)
