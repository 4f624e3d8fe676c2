"""REQ clients with the ZeroMQ guide's Lazy Pirate pattern.

A request waits ``timeout`` seconds for its reply.  On silence the REQ socket is closed (its state
machine is stuck) and a new one is opened; after ``retries`` further tries the request fails with
:class:`UnavailableError`.  Sockets are cached per thread and per endpoint.
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


class ReqClient:
    def __init__(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self._ctx = context
        self._local = threading.local()
        self._all: list[zmq.Socket[bytes]] = []
        self._lock = threading.Lock()

    def _sockets(self) -> dict[str, zmq.Socket[bytes]]:
        socks: dict[str, zmq.Socket[bytes]] | None = getattr(self._local, "socks", None)
        if socks is None:
            socks = {}
            self._local.socks = socks
        return socks

    def _open(self, endpoint: str) -> zmq.Socket[bytes]:
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        sock.connect(endpoint)
        with self._lock:
            self._all.append(sock)
        return sock

    def _discard(self, endpoint: str) -> None:
        sock = self._sockets().pop(endpoint, None)
        if sock is not None:
            sock.close(linger=0)
            with self._lock:
                if sock in self._all:
                    self._all.remove(sock)

    def request(
        self,
        endpoint: str,
        command: protocol.Command,
        body: Mapping[str, Any],
        timeout: float = 5.0,
        retries: int = 2,
    ) -> dict[str, Any]:
        frames = protocol.encode_request(command, body)
        socks = self._sockets()
        for attempt in range(retries + 1):
            sock = socks.get(endpoint)
            if sock is None:
                sock = socks[endpoint] = self._open(endpoint)
            try:
                sock.send_multipart(frames)
                if sock.poll(int(timeout * 1000), zmq.POLLIN):
                    reply = sock.recv_multipart()
                    return protocol.decode_reply(reply)
            except zmq.ZMQError as exc:
                log.debug("request to %s failed: %s", endpoint, exc)
            # Lazy Pirate: a REQ socket without its reply is stuck; close it and try a new one.
            self._discard(endpoint)
            if attempt < retries:
                log.debug(
                    "no reply from %s to %s, retrying (%d/%d)", endpoint, command.name, attempt + 1, retries
                )
        raise UnavailableError(
            f"node {endpoint} did not answer {command.name} within {timeout:g}s "
            f"({retries + 1} tries); is dcrond running there?"
        )

    def close(self) -> None:
        with self._lock:
            for sock in self._all:
                sock.close(linger=0)
            self._all.clear()
