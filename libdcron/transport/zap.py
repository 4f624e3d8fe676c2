"""A ZAP handler (ZeroMQ RFC 27) that admits CurveZMQ peers whose keys a :class:`Trust` knows.

libzmq asks ``inproc://zeromq.zap.01`` of the socket's context about every CURVE handshake on a
server socket.  This handler answers 200 with the peer's role and name as the ZAP *User-Id*
(``node:cluster``, ``client:alice``), which libzmq then attaches to every message of that
connection, so the ROUTER knows who sent each request.  Unknown keys get 400 and the connection is
closed before a single message is read; the refusal is logged, at most a few lines per interval.
"""

from __future__ import annotations

import logging
import threading

import zmq
import zmq.utils.z85

from .keys import Trust
from .ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"
DOMAIN = b"dcron"


class ZapHandler:
    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], trust: Trust) -> None:
        self.trust = trust
        self.denied = 0
        self._warn = RateLimitedLog(log)
        self._stop = threading.Event()
        self._sock = context.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(ZAP_ENDPOINT)
        self._thread = threading.Thread(target=self._loop, name="dcron-zap", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    if not self._sock.poll(200):
                        continue
                    request = self._sock.recv_multipart()
                except zmq.ZMQError as exc:
                    if exc.errno == zmq.ETERM:
                        return
                    log.warning("ZAP socket error: %s", exc)
                    continue
                try:
                    reply = self.answer(request)
                except Exception:  # never leave libzmq waiting: deny what we cannot judge
                    log.exception("ZAP handler failed; denying the peer")
                    reply = [ZAP_VERSION, request[1] if len(request) > 1 else b"", b"500", b"error", b"", b""]
                try:
                    self._sock.send_multipart(reply)
                except zmq.ZMQError as exc:
                    log.warning("ZAP reply failed: %s", exc)
        finally:
            self._sock.close(linger=0)

    def answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            return [ZAP_VERSION, request[1] if len(request) > 1 else b"", b"400", b"bad request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        peer_address = address.decode(errors="replace")
        if (
            version != ZAP_VERSION
            or mechanism != b"CURVE"
            or len(credentials) != 1
            or len(credentials[0]) != 32
        ):
            self._deny(peer_address, f"mechanism {mechanism.decode(errors='replace')}")
            return [ZAP_VERSION, request_id, b"400", b"CURVE required", b"", b""]
        public = zmq.utils.z85.encode(credentials[0])
        peer = self.trust.peer(public)
        if peer is None:
            self._deny(peer_address, f"unknown key {public.decode()}")
            return [ZAP_VERSION, request_id, b"400", b"unknown key", b"", b""]
        return [ZAP_VERSION, request_id, b"200", b"OK", f"{peer.role}:{peer.name}".encode(), b""]

    def _deny(self, address: str, why: str) -> None:
        self.denied += 1
        self._warn(logging.WARNING, "refused a connection from %s: %s", address, why)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
