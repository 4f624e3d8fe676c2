"""REQ clients with the ZeroMQ guide's Lazy Pirate pattern.

A request waits ``timeout`` seconds for its reply.  On silence the REQ socket is closed (its state
machine is stuck) and a new one is opened; after ``retries`` further tries the request fails with
:class:`UnavailableError`.

Sockets are pooled per endpoint: a request checks one out, uses it from its own thread, and checks
it back in (the pool's lock is the memory barrier ZeroMQ asks for when a socket changes threads).
Short-lived threads (one per run on a worker) therefore do not leak sockets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import zmq

from ..errors import UnavailableError
from . import protocol

log = logging.getLogger(__name__)

IDLE_PER_ENDPOINT = 8


class ReqClient:
    def __init__(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self._ctx = context
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
        sock.connect(endpoint)
        return sock

    def _checkin(self, endpoint: str, sock: zmq.Socket[bytes]) -> None:
        with self._lock:
            pool = self._idle.setdefault(endpoint, [])
            if not self._closed and len(pool) < IDLE_PER_ENDPOINT:
                pool.append(sock)
                return
            self._open_count -= 1
        sock.close(linger=0)

    def _discard(self, sock: zmq.Socket[bytes]) -> None:
        with self._lock:
            self._open_count -= 1
        sock.close(linger=0)

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
                if sock.poll(int(timeout * 1000), zmq.POLLIN):
                    reply = sock.recv_multipart()
                    self._checkin(endpoint, sock)
                    return protocol.decode_reply(reply)
            except zmq.ZMQError as exc:
                log.debug("request to %s failed: %s", endpoint, exc)
            # Lazy Pirate: a REQ socket without its reply is stuck; close it and try a new one.
            self._discard(sock)
            if attempt < retries:
                log.debug(
                    "no reply from %s to %s, retrying (%d/%d)", endpoint, command.name, attempt + 1, retries
                )
        raise UnavailableError(
            f"node {endpoint} did not answer {command.name} within {timeout:g}s "
            f"({retries + 1} tries); is dcrond running there?"
        )

    def open_sockets(self) -> int:
        with self._lock:
            return self._open_count

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [s for pool in self._idle.values() for s in pool]
            self._idle.clear()
        for sock in idle:
            sock.close(linger=0)
