"""Reading executions' logs: LOGS (an uploaded log) and TAIL (a log as it grows, from any node).

A running run's output goes to a spool file on the node running it (:meth:`Worker.read_log
<libdcron.worker.Worker.read_log>` reads it); at the run's end the file is moved to object storage
and the execution document gets ``log``.  TAIL answers from whichever of the two holds the log:
the execution document says which, and, while the run is in progress, on which node.  A node that
is not running it forwards the request to the node that is (once: the forwarded body carries
``"local": true`` and is never forwarded again).
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from .abc import Transport
from .api_base import LOG_CHUNK, NodeView, _int, _str
from .errors import NotFoundError, UnavailableError, ValidationError
from .model import Execution, utcnow
from .records import Records

#: How long after a started run's recorded end TAIL keeps saying ``running`` while its log upload
#: is pending (object storage down: the upload is journaled); then it says nothing more will come.
UPLOAD_GRACE = timedelta(seconds=30)
#: How long a node waits for the node running an execution to answer a forwarded TAIL.
FORWARD_TIMEOUT = 2.0


def _chunk(offset: int, size: int, data: bytes) -> dict[str, Any]:
    return {"offset": offset, "size": size, "data": base64.b64encode(data).decode(), "eof": offset + len(data) >= size}


def _check_offset(offset: int, size: int, exec_id: str) -> None:
    if offset > size:
        raise ValidationError(f"offset {offset} is past the end of the log of {exec_id} ({size} bytes so far)")


class LogsApi:
    """The API's log commands (a base of :class:`libdcron.api.Api`)."""

    node: NodeView
    records: Records

    def logs(self, body: dict[str, Any]) -> dict[str, Any]:
        exec_id = _str(body, "execution") or ""
        ex = self.records.execution(exec_id)
        if not ex.log:
            state = "still running" if not ex.status.terminal else "has no uploaded log (yet)"
            raise NotFoundError(f"execution {exec_id} {state}")
        offset = _int(body, "offset", 0, 0, 1 << 50)
        length = _int(body, "length", LOG_CHUNK, 1, LOG_CHUNK)
        store = self.node.resolve_objects(ex.log)
        size = store.stat(ex.log).size
        data = store.read_range(ex.log, offset, length) if offset < size else b""
        return {
            "url": ex.log,
            "offset": offset,
            "size": size,
            "data": base64.b64encode(data).decode(),
            "eof": offset + len(data) >= size,
        }

    def tail(self, body: dict[str, Any]) -> dict[str, Any]:
        """TAIL: up to ``length`` bytes of an execution's log from ``offset``, running or not.

        ``{"execution", "status", "offset", "size", "data" (base64), "eof", "running"}``: ``size``
        is the log's size so far (``offset`` while no log can be read); ``eof`` says ``data``
        reaches it.  ``running`` true: more may come
        (the run goes on, or its log is being uploaded), ask again from ``offset + len(data)``;
        ``running`` false and ``eof`` true: the whole log was read, nothing more will come.
        """
        exec_id = _str(body, "execution") or ""
        offset = _int(body, "offset", 0, 0, 1 << 50)
        length = _int(body, "length", LOG_CHUNK, 1, LOG_CHUNK)
        ex = self.records.execution(exec_id)
        reply: dict[str, Any] = {"execution": exec_id, "status": ex.status.value}
        if ex.status.terminal and ex.log:
            store = self.node.resolve_objects(ex.log)
            size = store.stat(ex.log).size
            _check_offset(offset, size, exec_id)
            data = store.read_range(ex.log, offset, length) if offset < size else b""
            return {**reply, **_chunk(offset, size, data), "running": False}
        if ex.status.terminal:
            # Its end is recorded without a log: one is coming when the run did start (the upload
            # is pending), none when it never started (or its worker was lost before the end).
            pending = ex.started is not None and (ex.ended is None or utcnow() - ex.ended < UPLOAD_GRACE)
            return {**reply, **_chunk(offset, offset, b""), "running": pending}
        if ex.node != self.node.node_id and not body.get("local"):
            return self._forward(ex, {"execution": exec_id, "offset": offset, "length": length, "local": True})
        found = self.node.worker.read_log(exec_id, offset, length) if ex.node == self.node.node_id else None
        if found is None:  # it has just ended (or this node restarted): its end is recorded soon
            return {**reply, **_chunk(offset, offset, b""), "running": True}
        data, size = found
        _check_offset(offset, size, exec_id)
        return {**reply, **_chunk(offset, size, data), "running": True}

    def _forward(self, ex: Execution, body: dict[str, Any]) -> dict[str, Any]:
        """TAIL asked of the node running ``ex``."""
        member = next((m for m in self.node.election.members() if m.node_id == ex.node), None)
        if member is None:
            raise UnavailableError(
                f"node {ex.node} running {ex.id} is not reachable: it is not a live member of the cluster"
            )
        transport = getattr(self.node, "transport", None)
        if not isinstance(transport, Transport):
            raise UnavailableError(f"node {self.node.node_id} cannot reach node {ex.node} running {ex.id}")
        try:
            return transport.request(member.endpoint, "TAIL", body, timeout=FORWARD_TIMEOUT, retries=0)
        except UnavailableError as exc:
            raise UnavailableError(f"node {ex.node} running {ex.id} is not reachable: {exc}") from None
