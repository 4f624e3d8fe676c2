"""REQ clients with the ZeroMQ guide's Lazy Pirate pattern.

A request waits ``timeout`` seconds for its reply.  On silence the REQ socket is closed (its state
machine is stuck) and a new one is opened; after ``retries`` further tries the request fails with
:class:`UnavailableError`.

Sockets are pooled per endpoint: a request checks one out, uses it from its own thread, and checks
it back in (the pool's lock is the memory barrier ZeroMQ asks for when a socket changes threads).
Short-lived threads (one per run on a worker) therefore do not leak sockets.

With :class:`~libdcron.transport.keys.Security` every socket is a CurveZMQ client (the server's
public key, our key pair).  Each socket is monitored, so a node that refuses our key is reported at
once as a :class:`ForbiddenError` instead of a silent time-out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import zmq
import zmq.utils.monitor

from ..errors import ForbiddenError, UnavailableError
from . import protocol
from .keys import Security

log = logging.getLogger(__name__)

IDLE_PER_ENDPOINT = 8


class ReqClient:
    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], security: Security | None = None) -> None:
        self._ctx = context
        self._security = security
        self._monitors: dict[zmq.Socket[bytes], zmq.Socket[bytes]] = {}
        self._idle: dict[str, list[zmq.Socket[bytes]]] = {}
        self._open_count = 0
        self._lock = threading.Lock()
        self._closed = False

    def _checkout(self, endpoint: str) -> zmq.Socket[bytes]:
        with self._lock:
            if self._closed:
                raise UnavailableError("client is closed")
            pool = self._idle.get(endpoint)
            if pool:
                return pool.pop()
            self._open_count += 1
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        if self._security is not None:
            keys = self._security.client
            sock.curve_serverkey = keys.server
            sock.curve_publickey = keys.me.public
            sock.curve_secretkey = keys.me.secret
            monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
            with self._lock:
                self._monitors[sock] = monitor
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._discard(sock)
            raise UnavailableError(
                f"cannot connect to {endpoint!r}: {exc} (an endpoint looks like tcp://host:7571)"
            ) from None
        return sock

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
            monitor = self._monitors.pop(sock, None)
        if monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            monitor.close(linger=0)
        sock.close(linger=0)

    def _wait(self, sock: zmq.Socket[bytes], endpoint: str, timeout: float) -> bool:
        """Wait for the reply; raise ForbiddenError as soon as the node refuses our key."""
        with self._lock:
            monitor = self._monitors.get(sock)
        if monitor is None:
            return bool(sock.poll(int(timeout * 1000), zmq.POLLIN))
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            events = dict(poller.poll(int(left * 1000) + 1))
            if sock in events:
                return True
            if monitor in events:
                event = zmq.utils.monitor.recv_monitor_message(monitor)
                if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    assert self._security is not None
                    raise ForbiddenError(
                        f"node {endpoint} refused this client's key "
                        f"{self._security.client.me.public.decode()}: add its public key file to the "
                        "node's KEYS_DIR/clients/ (see `dcron keygen`)"
                    )
        return False

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
            sock = self._checkout(endpoint)
            try:
                sock.send_multipart(frames)
                if self._wait(sock, endpoint, timeout):
                    reply = sock.recv_multipart()
                    self._checkin(endpoint, sock)
                    break
            except ForbiddenError:  # our key was refused: no point in retrying
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
