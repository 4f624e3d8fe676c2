"""The public API every node serves, one method per command (registration in
:mod:`libdcron.api_registration`, logs in :mod:`libdcron.api_logs`, shared limits and checks in
:mod:`libdcron.api_base`).

Each method takes the request body (a JSON object already decoded by the transport), validates it,
and returns the reply body.  Errors are :class:`DcronError` subclasses; the transport turns them
into error replies.  The CLI is a thin client of these commands.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from .api_base import (
    LIST_PAGE,
    MAX_DISPATCH_AHEAD,
    MAX_LIST_PAGE,
    MAX_PAGE,
    STATES,
    NextFireCache,
    NodeView,
    _int,
    _str,
)
from .api_logs import LogsApi
from .api_registration import RegistrationApi
from .errors import DcronError, ForbiddenError, ValidationError
from .model import (
    MAX_LOCATION,
    Job,
    format_instant,
    utcnow,
    validate_name,
)
from .records import Records
from .redact import redact_url
from .transport.messages import Dispatch, DispatchBatch, DispatchReply, FinishedBatch, RunNow
from .transport.protocol import Command


class Api(LogsApi, RegistrationApi):
    def __init__(self, node: NodeView) -> None:
        self.node = node
        self.records = Records(node.store)
        self._next_fire = NextFireCache()
        self.commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            Command.PING.name: self.ping,
            Command.STATUS.name: self.status,
            Command.SCHEDULE.name: self.schedule,
            Command.SCHEDULE_MANY.name: self.schedule_many,
            Command.ENABLE.name: self.enable,
            Command.DISABLE.name: self.disable,
            Command.LIST.name: self.list,
            Command.SHOW.name: self.show,
            Command.EXECUTIONS.name: self.executions,
            Command.LOGS.name: self.logs,
            Command.TAIL.name: self.tail,
            Command.RUN.name: self.run,
            Command.DISPATCH.name: self.dispatch,
            Command.RUN_NOW.name: self.run_now,
            Command.FINISHED.name: self.finished,
        }

    def handle(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """Serve one command (a :class:`~libdcron.transport.protocol.Command` name)."""
        handler = self.commands.get(command)
        if handler is None:
            raise ValidationError(f"command {command} is not served by this node")
        return handler(body)

    # -- health ------------------------------------------------------------------------------

    def ping(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"node": self.node.node_id, "time": format_instant(utcnow())}

    def status(self, body: dict[str, Any]) -> dict[str, Any]:
        node = self.node
        leader = node.election.leader()
        return {
            "node": node.node_id,
            "endpoint": node.endpoint,
            "is_leader": node.election.is_leader(),
            "leader": leader.to_wire() if leader else None,
            "members": [m.to_wire() for m in node.election.members()],
            "capacity": node.worker.capacity,
            "running": node.worker.running(),
            "outbox": node.recorder.pending() if node.recorder else 0,
            "store": redact_url(node.settings.store or ""),
            "objects": redact_url(node.settings.objects or ""),
            "election": redact_url(node.settings.election or ""),
        }

    # -- jobs --------------------------------------------------------------------------------

    def _set_enabled(self, body: dict[str, Any], enabled: bool) -> dict[str, Any]:
        name = validate_name(_str(body, "name") or "")

        def change(job: Job) -> Job | None:
            if job.enabled == enabled:
                return None
            return job.with_changes(enabled=enabled, updated=format_instant(utcnow()))

        job, changed = self.records.change_job(name, change)
        return {"job": job.to_doc(), "changed": changed}

    def enable(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._set_enabled(body, True)

    def disable(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._set_enabled(body, False)

    def list(self, body: dict[str, Any]) -> dict[str, Any]:
        """LIST: one page of jobs by name, ``{"jobs": [...], "next": CURSOR or null}``.

        ``limit`` (default 100, at most 1000), ``after`` (the ``next`` of the previous page: the
        last name it held), ``state`` (``enabled``, ``disabled`` or ``all``, the default).  A page
        by state compares the state of at most :data:`~libdcron.records.LIST_SCAN` jobs: it may
        hold fewer than ``limit`` jobs, even none, and still have a ``next``.
        """
        limit = _int(body, "limit", LIST_PAGE, 1, MAX_LIST_PAGE)
        after = _str(body, "after", required=False, limit=MAX_LOCATION) or None
        state = _str(body, "state", required=False, limit=16) or "all"
        if state not in STATES:
            raise ValidationError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        page, cursor = self.records.list_jobs(limit, after=after, enabled=STATES[state])
        now = utcnow()
        jobs = []
        for job in page:
            entry = job.to_doc()
            entry["next"] = self._next_fire.get(job, now) if job.enabled else None
            jobs.append(entry)
        return {"jobs": jobs, "next": cursor}

    def show(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._get_job(_str(body, "name") or "")
        latest = self.records.executions(job.name, limit=1)
        return {
            "job": job.to_doc(),
            "next": self._next(job, _int(body, "count", 3, 1, 100)),
            "last": latest[0].to_wire() if latest else None,
        }

    def executions(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._get_job(_str(body, "name") or "")
        limit = _int(body, "limit", 20, 1, MAX_PAGE)
        page = _int(body, "page", 1, 1, 1_000_000)
        found = self.records.executions(job.name, limit=limit, skip=(page - 1) * limit)
        return {"executions": [ex.to_wire() for ex in found], "page": page, "limit": limit}

    # -- manual runs ---------------------------------------------------------------------------

    def run(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._get_job(_str(body, "name") or "")
        return self.node.to_leader(
            "RUN_NOW", RunNow(job.name).to_body(), lambda leader: leader.run_now(job), timeout=5.0
        )

    def dispatch(self, body: dict[str, Any]) -> dict[str, Any]:
        """DISPATCH, from the current leader only: one run, or many (``runs``), each with a sane
        fire time and attempt and a script in an allowed store.  A batch is answered run by run:
        a run that fails its checks is declined (``reason``) without failing the others."""
        node = self.node
        sender = body.get("leader")
        leader = node.election.leader()
        if leader is None or sender != leader.node_id:
            raise ForbiddenError(
                f"DISPATCH from {sender!r} refused: the leader is "
                f"{leader.node_id if leader else 'not elected'}"
            )
        if "runs" not in body:
            msg = Dispatch.from_body(body)
            self._check_run(msg)
            return node.worker.accept(msg)
        batch = DispatchBatch.from_body(body)
        runs: builtins.list[Dispatch | DcronError] = []
        for i in range(len(batch.runs)):
            try:
                runs.append(batch.parse_run(i))
            except ValidationError as exc:
                runs.append(exc)
        return {"replies": self._accept(runs)}

    def dispatch_local(self, runs: builtins.list[Dispatch]) -> builtins.list[DispatchReply]:
        """This node's leader sending runs to this node's worker: the checks of :meth:`dispatch`
        (but the sender's, which is this node) without the wire."""
        return [DispatchReply.from_body(reply) for reply in self._accept(builtins.list(runs))]

    def _accept(self, runs: builtins.list[Dispatch | DcronError]) -> builtins.list[dict[str, Any]]:
        """One reply per run: a run that failed to parse (given as its error) or fails its checks
        is declined on its own; the worker takes or declines the others together."""
        replies: builtins.list[dict[str, Any] | None] = [None] * len(runs)
        good: builtins.list[tuple[int, Dispatch]] = []
        for i, msg in enumerate(runs):
            try:
                if isinstance(msg, DcronError):
                    raise msg
                self._check_run(msg)
            except (ValidationError, ForbiddenError) as exc:
                replies[i] = DispatchReply(False, reason=f"refused: {exc}").to_body()
                continue
            good.append((i, msg))
        accepted = self.node.worker.accept_many([msg for _, msg in good]) if good else []
        for (i, _), reply in zip(good, accepted, strict=True):
            replies[i] = reply
        return [r or DispatchReply(False, reason="no answer").to_body() for r in replies]

    def _check_run(self, msg: Dispatch) -> None:
        ahead = (msg.fire_time - utcnow()).total_seconds()
        if ahead > MAX_DISPATCH_AHEAD:
            raise ValidationError(
                f"DISPATCH fire time {format_instant(msg.fire_time)} is {ahead:.0f}s ahead; "
                f"at most {MAX_DISPATCH_AHEAD:.0f}s are accepted"
            )
        self.node.resolve_objects(msg.job.script)  # the script must lie in an allowed store

    def finished(self, body: dict[str, Any]) -> dict[str, Any]:
        leader = self.node.local_leader()
        for ex in FinishedBatch.from_body(body).executions:
            leader.finished(ex)
        return {}

    def run_now(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._get_job(RunNow.from_body(body).name)
        return self.node.local_leader().run_now(job)
