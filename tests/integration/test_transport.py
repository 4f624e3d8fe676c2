"""The ZeroMQ transport on loopback: requests, Lazy Pirate retries, garbage and oversized frames."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from libdcron.errors import NotFoundError, ProtocolError, UnavailableError
from libdcron.transport import protocol
from libdcron.transport.zmq import ZmqTransport


def handler(command: str, body: dict[str, Any]) -> dict[str, Any]:
    if command == "SHOW":
        raise NotFoundError(f"no job named {body.get('name')!r}")
    if command == "LIST":
        raise RuntimeError("handler bug")
    if command == "STATUS":
        time.sleep(float(body.get("sleep", 0)))
    return {"command": command, "echo": body}


@pytest.fixture
def server() -> Iterator[tuple[ZmqTransport, str]]:
    transport = ZmqTransport()
    endpoint = transport.serve("tcp://127.0.0.1:0", handler)
    yield transport, endpoint
    transport.close()


@pytest.fixture
def client() -> Iterator[ZmqTransport]:
    transport = ZmqTransport()
    yield transport
    transport.close()


def test_request_reply(server: tuple[ZmqTransport, str], client: ZmqTransport) -> None:
    _, endpoint = server
    assert client.request(endpoint, "PING", {"x": 1}) == {"command": "PING", "echo": {"x": 1}}


def test_errors_travel_as_their_class(server: tuple[ZmqTransport, str], client: ZmqTransport) -> None:
    _, endpoint = server
    with pytest.raises(NotFoundError, match="no job named 'nope'"):
        client.request(endpoint, "SHOW", {"name": "nope"})


def test_handler_crash_is_an_error_reply_and_the_server_goes_on(
    server: tuple[ZmqTransport, str], client: ZmqTransport
) -> None:
    _, endpoint = server
    with pytest.raises(Exception, match="internal error"):
        client.request(endpoint, "LIST", {})
    assert client.request(endpoint, "PING", {})["command"] == "PING"


def test_no_server_gives_unavailable_after_retries(client: ZmqTransport) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="did not answer PING"):
        client.request(f"tcp://127.0.0.1:{port}", "PING", {}, timeout=0.2, retries=2)
    assert time.monotonic() - started < 3


def test_lazy_pirate_recovers_after_a_timeout(server: tuple[ZmqTransport, str], client: ZmqTransport) -> None:
    _, endpoint = server
    with pytest.raises(UnavailableError):
        client.request(endpoint, "STATUS", {"sleep": 1.0}, timeout=0.2, retries=0)
    # The stuck REQ socket was replaced: the next request on this thread works.
    assert client.request(endpoint, "PING", {})["command"] == "PING"


def _dealer(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


@pytest.mark.parametrize(
    "frames",
    [
        [b""],
        [b"", b"garbage"],
        [b"", b"DCRON/1", b"\x01"],
        [b"", b"DCRON/1", b"\x99", b"{}"],
        [b"", b"DCRON/1", b"\x01", b"not json"],
        [b"", os.urandom(64), os.urandom(3), os.urandom(100)],
        [b"", b"DCRON/9", b"\x01", b"{}"],
    ],
)
def test_garbage_frames_get_an_error_reply(
    server: tuple[ZmqTransport, str], client: ZmqTransport, frames: list[bytes]
) -> None:
    _, endpoint = server
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = _dealer(ctx, endpoint)
    try:
        sock.send_multipart(frames)
        assert sock.poll(3000), "no reply to a malformed message"
        reply = sock.recv_multipart()
        assert reply[0] == b""
        with pytest.raises(ProtocolError):
            protocol.decode_reply(reply[1:])
    finally:
        sock.close()
    assert client.request(endpoint, "PING", {})["command"] == "PING"


def test_oversized_message_drops_the_peer_not_the_server(
    server: tuple[ZmqTransport, str], client: ZmqTransport
) -> None:
    _, endpoint = server
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = _dealer(ctx, endpoint)
    try:
        sock.send_multipart([b"", protocol.HEADER, b"\x01", b"x" * (protocol.MAX_MESSAGE + 10)])
        assert not sock.poll(1000), "an oversized message must not be answered"
    finally:
        sock.close()
    assert client.request(endpoint, "PING", {})["command"] == "PING"


def test_raw_tcp_garbage_does_not_stop_the_server(
    server: tuple[ZmqTransport, str], client: ZmqTransport
) -> None:
    _, endpoint = server
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    for payload in (b"GET / HTTP/1.1\r\n\r\n", os.urandom(4096), b"\xff" * 10 + b"\x00" * 100):
        with socket.create_connection((host, int(port)), timeout=2) as raw:
            raw.sendall(payload)
            time.sleep(0.05)
    assert client.request(endpoint, "PING", {})["command"] == "PING"


def test_concurrent_clients(server: tuple[ZmqTransport, str]) -> None:
    _, endpoint = server
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        transport = ZmqTransport()
        try:
            for i in range(50):
                reply = transport.request(endpoint, "PING", {"n": n, "i": i})
                assert reply["echo"] == {"n": n, "i": i}
        except BaseException as exc:
            errors.append(exc)
        finally:
            transport.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
