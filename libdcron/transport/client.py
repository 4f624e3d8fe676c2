"""REQ clients with the ZeroMQ guide's Lazy Pirate pattern, and a fast answer for dead nodes.

A request waits ``timeout`` seconds for its reply.  On silence the REQ socket is closed (its state
machine is stuck) and a new one is opened; after ``retries`` further tries the request fails with
:class:`UnavailableError`.  That is for a node that is up but slow.

A ZeroMQ connect to a port where nothing listens never fails by itself: the socket retries in the
background and the request would wait its whole timeout, on every try.  So every socket is
monitored: when it has not completed a handshake :data:`UNREACHABLE_AFTER` seconds after the
request was sent (or by the timeout, if shorter) and its connection attempts failed meanwhile
(refused, or timed out after :data:`CONNECT_TIMEOUT`), the request fails at once with
:class:`UnavailableError`, without retrying, and a caller holding several endpoints moves on to the
next one.  A connection that is made but fails its handshake (not a dcron node, or the wrong
server key) is reported the same way.

Sockets are pooled per endpoint: a request checks one out, uses it from its own thread, and checks
it back in (the pool's lock is the memory barrier ZeroMQ asks for when a socket changes threads).
Short-lived threads (one per run on a worker) therefore do not leak sockets.  A pooled socket whose
peer went away is closed at checkout instead of reused.

With :class:`~libdcron.transport.keys.Security` every socket is a CurveZMQ client (the server's
public key, our key pair), and a node that refuses our key is reported at once as a
:class:`ForbiddenError` instead of a silent time-out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.utils.monitor

from ..errors import ForbiddenError, UnavailableError
from . import protocol
from .keys import Security

log = logging.getLogger(__name__)

IDLE_PER_ENDPOINT = 8
#: Seconds after a request is sent by which a socket that could not connect is reported unreachable.
UNREACHABLE_AFTER = 1.0
#: Seconds a TCP connect may take before ZeroMQ abandons it and retries (a host that drops SYNs).
CONNECT_TIMEOUT = 2.0

MONITORED = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


@dataclass
class _Link:
    """What a socket's monitor has told about its connection."""

    monitor: zmq.Socket[bytes]
    up: bool = False  # a handshake succeeded and the connection has not dropped since
    connected: bool = False  # a TCP connection was made at least once
    failures: int = 0  # connection attempts that failed while not up
    refused_key: bool = False  # the node's ZAP handler refused our key

    def read(self) -> None:
        """Apply every event the monitor holds, without blocking."""
        while True:
            try:
                event = zmq.utils.monitor.recv_monitor_message(self.monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_CONNECTED:
                self.connected = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.up, self.failures = True, 0
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.refused_key = True
            elif event == zmq.EVENT_DISCONNECTED:  # before a handshake: it failed, or was cut
                self.failures += not self.up
                self.up = False
            elif event == zmq.EVENT_CONNECT_RETRIED:
                self.up = False
                self.failures += 1


class ReqClient:
    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], security: Security | None = None) -> None:
        self._ctx = context
        self._security = security
        self._links: dict[zmq.Socket[bytes], _Link] = {}
        self._idle: dict[str, list[zmq.Socket[bytes]]] = {}
        self._open_count = 0
        self._lock = threading.Lock()
        self._closed = False

    def _checkout(self, endpoint: str) -> tuple[zmq.Socket[bytes], _Link]:
        while True:
            with self._lock:
                if self._closed:
                    raise UnavailableError("client is closed")
                pool = self._idle.get(endpoint)
                if not pool:
                    self._open_count += 1
                    break
                sock = pool.pop()
                link = self._links[sock]
            link.read()
            if link.up:
                return sock, link
            self._discard(sock)  # its peer went away: a fresh socket is judged afresh
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        sock.setsockopt(zmq.CONNECT_TIMEOUT, int(CONNECT_TIMEOUT * 1000))
        if self._security is not None:
            keys = self._security.client
            sock.curve_serverkey = keys.server
            sock.curve_publickey = keys.me.public
            sock.curve_secretkey = keys.me.secret
        link = _Link(sock.get_monitor_socket(MONITORED))
        with self._lock:
            self._links[sock] = link
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._discard(sock)
            raise UnavailableError(
                f"cannot connect to {endpoint!r}: {exc} (an endpoint looks like tcp://host:7571)"
            ) from None
        return sock, link

    def _checkin(self, endpoint: str, sock: zmq.Socket[bytes]) -> None:
        with self._lock:
            pool = self._idle.setdefault(endpoint, [])
            if not self._closed and len(pool) < IDLE_PER_ENDPOINT:
                pool.append(sock)
                return
            self._open_count -= 1
        self._close(sock)

    def _discard(self, sock: zmq.Socket[bytes]) -> None:
        with self._lock:
            self._open_count -= 1
        self._close(sock)

    def _close(self, sock: zmq.Socket[bytes]) -> None:
        with self._lock:
            link = self._links.pop(sock, None)
        if link is not None:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            link.monitor.close(linger=0)
        sock.close(linger=0)

    def _wait(
        self, sock: zmq.Socket[bytes], link: _Link, endpoint: str, command: protocol.Command, timeout: float
    ) -> bool:
        """Wait for the reply (True) or the timeout (False); raise at once when the node refuses our
        key (:class:`ForbiddenError`) or cannot be reached (:class:`UnavailableError`)."""
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(link.monitor, zmq.POLLIN)
        started = time.monotonic()
        deadline = started + timeout
        judge_at = started + min(UNREACHABLE_AFTER, timeout)
        while True:
            link.read()
            if link.refused_key:
                raise self._forbidden(endpoint)
            now = time.monotonic()
            if now >= judge_at and not link.up and link.failures and not sock.poll(0, zmq.POLLIN):
                raise self._unreachable(endpoint, command, link, now - started)
            if now >= deadline:
                return False
            wake = judge_at if now < judge_at else deadline
            events = dict(poller.poll(int((wake - now) * 1000) + 1))
            if sock in events:
                return True

    def _forbidden(self, endpoint: str) -> ForbiddenError:
        public = self._security.client.me.public.decode() if self._security is not None else "?"
        return ForbiddenError(
            f"node {endpoint} refused this client's key {public}: add its public key file to the "
            "node's KEYS_DIR/clients/ (see `dcron keygen`)"
        )

    def _unreachable(
        self, endpoint: str, command: protocol.Command, link: _Link, elapsed: float
    ) -> UnavailableError:
        if link.connected:
            why = (
                "something listens there, but the connection failed its handshake; is it a dcron "
                f"node{self._key_hint()}?"
            )
        else:
            why = (
                f"nothing listens there (connections refused or timed out for {elapsed:.1f}s); "
                "is dcrond running there?"
            )
        return UnavailableError(f"node {endpoint} did not answer {command.name}: {why}")

    def request(
        self,
        endpoint: str,
        command: protocol.Command,
        body: Mapping[str, Any],
        timeout: float = 5.0,
        retries: int = 2,
    ) -> dict[str, Any]:
        frames = protocol.encode_request(command, body)
        for attempt in range(retries + 1):
            sock, link = self._checkout(endpoint)
            try:
                sock.send_multipart(frames)
                if self._wait(sock, link, endpoint, command, timeout):
                    reply = sock.recv_multipart()
                    self._checkin(endpoint, sock)
                    break
            except (ForbiddenError, UnavailableError):  # refused key, or nothing there: no retry
                self._discard(sock)
                raise
            except zmq.ZMQError as exc:
                log.debug("request to %s failed: %s", endpoint, exc)
            # Lazy Pirate: a REQ socket without its reply is stuck; close it and try a new one.
            self._discard(sock)
            if attempt < retries:
                log.debug(
                    "no reply from %s to %s, retrying (%d/%d)", endpoint, command.name, attempt + 1, retries
                )
        else:
            raise UnavailableError(
                f"node {endpoint} did not answer {command.name} within {timeout:g}s "
                f"({retries + 1} tries); is dcrond running there{self._key_hint()}?"
            )
        return protocol.decode_reply(reply)

    def _key_hint(self) -> str:
        return ", and is the server key its cluster key" if self._security is not None else ""

    def open_sockets(self) -> int:
        with self._lock:
            return self._open_count

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [s for pool in self._idle.values() for s in pool]
            self._idle.clear()
        for sock in idle:
            self._close(sock)
