"""The ZeroMQ implementation of :class:`libdcron.abc.Transport`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zmq

from ..abc import Handler, Transport
from ..errors import ValidationError
from .client import ReqClient
from .keys import Security
from .protocol import Command
from .server import RouterServer


class ZmqTransport(Transport):
    """ZeroMQ REQ/ROUTER; CurveZMQ-authenticated when given :class:`Security` (nodes always are)."""

    def __init__(
        self, context: zmq.Context[zmq.Socket[bytes]] | None = None, security: Security | None = None
    ) -> None:
        self._own_context = context is None
        self.context: zmq.Context[zmq.Socket[bytes]] = context or zmq.Context()
        self.security = security
        self._client = ReqClient(self.context, security)
        self._server: RouterServer | None = None

    def serve(self, bind: str, handler: Handler) -> str:
        self._server = RouterServer(self.context, handler, security=self.security)
        return self._server.start(bind)

    @property
    def server(self) -> RouterServer | None:
        return self._server

    def request(
        self, endpoint: str, command: str, body: Mapping[str, Any], timeout: float = 5.0, retries: int = 2
    ) -> dict[str, Any]:
        try:
            cmd = Command[command]
        except KeyError:
            raise ValidationError(f"unknown command {command!r}") from None
        return self._client.request(endpoint, cmd, body, timeout=timeout, retries=retries)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._client.close()
        if self._own_context:
            self.context.destroy(linger=0)
