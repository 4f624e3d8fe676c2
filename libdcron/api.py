"""The public API every node serves, one method per command.

Each method takes the request body (a JSON object already decoded by the transport), validates it,
and returns the reply body.  Errors are :class:`DcronError` subclasses; the transport turns them
into error replies.  The CLI is a thin client of these commands.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from typing import Any, Protocol

from .abc import DocumentStore, Election, ObjectStore
from .config import NodeSettings
from .errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from .leader import Leader
from .model import (
    MAX_INTERPRETER,
    MAX_LOCATION,
    MAX_SCHEDULE,
    MAX_TZ,
    Job,
    format_instant,
    utcnow,
    validate_name,
)
from .plugins import Plugins
from .recorder import Recorder
from .records import Records
from .redact import redact_url
from .schedule import parse_schedule
from .transport.messages import Dispatch, Finished, RunNow
from .transport.protocol import Command
from .worker import Worker

MAX_SCRIPT = 4 * 1024 * 1024
MAX_PAGE = 500
LOG_CHUNK = 1024 * 1024
#: How far from now a DISPATCH's fire time may be ahead (the leader sends runs ahead by `lead`).
MAX_DISPATCH_AHEAD = 60.0


def _str(body: dict[str, Any], key: str, required: bool = True, limit: int = MAX_LOCATION) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be a string")
    if len(value) > limit:
        raise ValidationError(f"{key} is {len(value)} characters long; at most {limit} are allowed")
    return value


def _int(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(f"{key} must be an integer between {lo} and {hi}")
    return value


class NodeView(Protocol):
    """What the API needs of its node (:class:`libdcron.node.Node` is one)."""

    node_id: str
    endpoint: str
    settings: NodeSettings
    store: DocumentStore
    objects: ObjectStore
    election: Election
    plugins: Plugins
    recorder: Recorder | None

    @property
    def worker(self) -> Worker: ...

    def resolve_objects(self, url: str) -> ObjectStore: ...

    def local_leader(self) -> Leader: ...

    def to_leader(
        self, command: str, body: dict[str, Any], local: Callable[[Leader], dict[str, Any]], timeout: float
    ) -> dict[str, Any]: ...


class Api:
    def __init__(self, node: NodeView) -> None:
        self.node = node
        self.records = Records(node.store)
        self.commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            Command.PING.name: self.ping,
            Command.STATUS.name: self.status,
            Command.SCHEDULE.name: self.schedule,
            Command.ENABLE.name: self.enable,
            Command.DISABLE.name: self.disable,
            Command.LIST.name: self.list,
            Command.SHOW.name: self.show,
            Command.EXECUTIONS.name: self.executions,
            Command.LOGS.name: self.logs,
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

    def _get_job(self, name: str) -> Job:
        return self.records.job(validate_name(name))

    def schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        name = validate_name(body.get("name"))
        expression = _str(body, "schedule", limit=MAX_SCHEDULE) or ""
        tz = _str(body, "tz", required=False, limit=MAX_TZ) or "UTC"
        parse_schedule(expression, tz)  # raises with position and reason
        interpreter = _str(body, "interpreter", limit=MAX_INTERPRETER) or ""
        known = self.node.plugins.interpreters()
        if interpreter not in known:
            raise ValidationError(
                f"unknown interpreter {interpreter!r}; this node knows {', '.join(sorted(known))}"
            )
        timeout = _int(body, "timeout", 0, 0, 366 * 24 * 3600)
        max_attempts = _int(body, "max_attempts", 3, 1, 100)
        update = bool(body.get("update", False))
        script, sha = self._script(body, name, known[interpreter].suffix)
        now = format_instant(utcnow())
        job = Job(
            name=name,
            schedule=expression,
            interpreter=interpreter,
            script=script,
            script_sha256=sha,
            timeout=timeout,
            tz=tz,
            max_attempts=max_attempts,
            created=now,
            updated=now,
        ).validate()
        try:
            self.records.create_job(job)
            return {"job": job.to_doc(), "created": True, "next": self._next(job, 1)}
        except ConflictError:
            if not update:
                raise ConflictError(
                    f"a job named {name!r} already exists; pass --update to change it"
                ) from None

        def change(current: Job) -> Job:
            return job.with_changes(created=current.created, enabled=current.enabled, version=current.version + 1)

        updated, _ = self.records.change_job(name, change)
        return {"job": updated.to_doc(), "created": False, "next": self._next(updated, 1)}

    def _script(self, body: dict[str, Any], name: str, suffix: str) -> tuple[str, str | None]:
        objects = self.node.objects
        content = _str(body, "script_content", required=False, limit=(MAX_SCRIPT + 2) // 3 * 4)
        if content is not None:
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                raise ValidationError("script_content must be base64") from None
            if len(data) > MAX_SCRIPT:
                raise ValidationError(f"script is {len(data)} bytes; at most {MAX_SCRIPT} can be uploaded")
            sha = hashlib.sha256(data).hexdigest()
            url = objects.url_for(f"scripts/{name}/{sha}{suffix}")
            objects.put_bytes(data, url)
            return url, sha
        location = _str(body, "script") or ""
        if "://" not in location:
            if location.startswith("/") or not location.strip("/"):
                raise ValidationError(
                    f"script {location!r} is neither a URL nor a key relative to the object store; "
                    "pass a local file, a key such as jobs/x.py, or a URL inside the object store"
                )
            location = objects.url_for(location)
        store = self.node.resolve_objects(location)  # refuses what lies outside the allowed stores
        if not store.exists(location):
            raise NotFoundError(
                f"script {redact_url(location)} not found in object storage; upload it or pass a local file"
            )
        return location, _str(body, "script_sha256", required=False, limit=64)

    def _next(self, job: Job, count: int) -> list[str]:
        if not job.enabled:
            return []
        schedule = parse_schedule(job.schedule, job.tz)
        out, at = [], utcnow()
        for _ in range(count):
            at = schedule.next_after(at)
            out.append(format_instant(at))
        return out

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
        jobs = []
        for job in self.records.jobs():
            entry = job.to_doc()
            try:
                nxt = self._next(job, 1)
            except ValidationError:
                nxt = []
            entry["next"] = nxt[0] if nxt else None
            jobs.append(entry)
        return {"jobs": jobs}

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

    # -- manual runs ---------------------------------------------------------------------------

    def run(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._get_job(_str(body, "name") or "")
        return self.node.to_leader(
            "RUN_NOW", RunNow(job.name).to_body(), lambda leader: leader.run_now(job), timeout=5.0
        )

    def dispatch(self, body: dict[str, Any]) -> dict[str, Any]:
        """DISPATCH, from the current leader only, for a sane fire time and attempt."""
        node = self.node
        sender = body.get("leader")
        leader = node.election.leader()
        if leader is None or sender != leader.node_id:
            raise ForbiddenError(
                f"DISPATCH from {sender!r} refused: the leader is "
                f"{leader.node_id if leader else 'not elected'}"
            )
        msg = Dispatch.from_body(body)
        ahead = (msg.fire_time - utcnow()).total_seconds()
        if ahead > MAX_DISPATCH_AHEAD:
            raise ValidationError(
                f"DISPATCH fire time {format_instant(msg.fire_time)} is {ahead:.0f}s ahead; "
                f"at most {MAX_DISPATCH_AHEAD:.0f}s are accepted"
            )
        node.resolve_objects(msg.job.script)  # the script must lie in an allowed store
        return node.worker.dispatch(body)

    def finished(self, body: dict[str, Any]) -> dict[str, Any]:
        ex = Finished.from_body(body).execution
        self.node.local_leader().finished(ex)
        return {}

    def run_now(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._get_job(RunNow.from_body(body).name)
        return self.node.local_leader().run_now(job)
