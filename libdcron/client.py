"""A Python client of the dcron API: what the CLI uses, and what embedding code can use.

It talks to any node; given several endpoints it tries them in order until one answers (a node
that is not running is skipped in about a second).  An endpoint is ``tcp://HOST:PORT``; a bare
``HOST:PORT`` is taken as ``tcp://HOST:PORT``.
"""

from __future__ import annotations

import base64
import builtins
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import default_data_dir
from .errors import DcronError, NotFoundError, UnavailableError, ValidationError
from .transport.keys import Security, client_security
from .transport.protocol import encode_body
from .transport.zmq import ZmqTransport

READS = {"PING", "STATUS", "LIST", "SHOW", "EXECUTIONS", "LOGS", "TAIL"}
#: Jobs per SCHEDULE_MANY request that :meth:`Client.schedule_many` sends (the node takes 10,000).
SCHEDULE_MANY_CHUNK = 5000
#: Encoded bytes per SCHEDULE_MANY request at most, well within the protocol's 8 MiB body.
CHUNK_BYTES = 6 * 1024 * 1024
#: :meth:`Client.execution` looks among this many of a job's newest executions.
LOOKUP_PAGES, LOOKUP_PAGE = 4, 500
#: How long :meth:`Client.follow_log` waits for an execution to be recorded (`dcron run` just
#: asked for it: its worker records it when the leader's DISPATCH reaches it).
START_WAIT = 5.0
EXAMPLE_ENDPOINT = "tcp://127.0.0.1:7571"
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")


def normalize_endpoint(text: str) -> str:
    """``tcp://HOST:PORT`` as it is, ``HOST:PORT`` as ``tcp://HOST:PORT``, ``ipc://PATH`` as it is;
    anything else is a :class:`ValidationError` saying what an endpoint looks like."""
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep and _valid_host_port(text):
        return f"tcp://{text}"
    if sep and scheme in ("ipc", "inproc") and rest:
        return text
    if sep and scheme == "tcp" and _valid_host_port(rest):
        return text
    if sep and scheme != "tcp":
        problem = f"dcron nodes listen on ZeroMQ tcp:// endpoints, not {scheme}://"
    else:
        problem = "an endpoint is tcp://HOST:PORT (or HOST:PORT) with a port from 1 to 65535"
    raise ValidationError(f"endpoint {text!r}: {problem}, such as {EXAMPLE_ENDPOINT}")


def _valid_host_port(text: str) -> bool:
    match = _HOST_PORT.match(text)
    return bool(match) and 1 <= int(match.group(2)) <= 65535  # type: ignore[union-attr]


def _looks_local(script: str) -> bool:
    """Whether ``script`` can only mean a file of this host (an object key is relative, plain)."""
    return script.startswith(("/", "./", "../", "~")) or script in (".", "..") or "\\" in script


def _script_fields(script: str | Path) -> dict[str, Any]:
    """``script_content`` for a local file (uploaded), else ``script``: a location in object storage.

    A ``Path``, or a string that can only be a local path (``./x.py``, ``../x.py``, ``/x.py``,
    ``~/x.py``), must name an existing file: :class:`ValidationError` otherwise.
    """
    text = str(script)
    if "://" in text:
        return {"script": text}
    path = Path(text).expanduser()
    if path.is_file():
        return {"script_content": base64.b64encode(path.read_bytes()).decode()}
    if path.exists():
        raise ValidationError(f"script {text!r} is a folder, not a file")
    if isinstance(script, Path) or _looks_local(text):
        key = path.name or "x.py"
        raise ValidationError(
            f"no local file {text!r} exists (in {Path.cwd()}); nor is it an object key: a script "
            f"already in object storage is named by a key relative to the node's object store, such "
            f"as {key} or jobs/{key}, or by a URL"
        )
    return {"script": text}


def _no_local_file_either(exc: DcronError, script: str) -> DcronError:
    """A node's "not found in object storage" for a bare key that is not a local file either."""
    if isinstance(exc, NotFoundError) and "not found in object storage" in str(exc):
        return NotFoundError(f"{exc}; no local file {script!r} exists either (in {Path.cwd()})")
    return exc


class Client:
    """A client of any node.

    Its CurveZMQ keys are ``key`` (this client's secret key) and ``server_key`` (the cluster's
    public key), each a file or Z85 text; by default those that ``dcrond`` created in its data
    folder (``data_dir``, else ``DCRON_DATA_DIR``, else ``~/.local/share/dcron``), so a client on a
    node's host needs no setting at all.  ``security`` overrides all of them.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        timeout: float = 10.0,
        *,
        data_dir: str | Path | None = None,
        key: str | None = None,
        server_key: str | None = None,
        security: Security | None = None,
    ) -> None:
        items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
        self.endpoints = [normalize_endpoint(e) for e in items if e.strip()]
        if not self.endpoints:
            raise ValidationError("no node endpoint given (set --endpoint or DCRON_ENDPOINT)")
        self.timeout = timeout
        if security is None:
            folder = Path(data_dir or os.environ.get("DCRON_DATA_DIR") or default_data_dir()).expanduser()
            security = client_security(folder, key, server_key)
        self.transport = ZmqTransport(security=security)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self, command: str, body: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send to the first node that answers.  Writes are not re-sent to the same node.

        A node that is not running is skipped in about a second; one that is up but silent costs
        ``timeout`` per try.  When none answers, the :class:`UnavailableError` says why for each.
        """
        retries = 1 if command in READS else 0
        errors: builtins.list[UnavailableError] = []
        for endpoint in self.endpoints:
            try:
                return self.transport.request(
                    endpoint, command, body or {}, timeout=timeout or self.timeout, retries=retries
                )
            except UnavailableError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise UnavailableError(f"no node answered: {'; '.join(str(e) for e in errors)}")

    def schedule(
        self,
        name: str,
        schedule: str,
        interpreter: str,
        script: str | Path,
        timeout: int = 0,
        tz: str = "UTC",
        update: bool = False,
        max_attempts: int = 3,
        keep_runs: int | None = None,
        keep_days: int | None = None,
    ) -> dict[str, Any]:
        """Register (or with ``update``, change) a job.

        ``script`` is a local file (uploaded, its sha256 recorded) when such a file exists, else
        the location of a script already in object storage (``s3://...``, or a key such as
        ``jobs/x.py``).  A :class:`~pathlib.Path`, or a string such as ``./x.py`` that can only be
        a local path, must exist.  A taken name raises :class:`ConflictError` unless ``update``.
        ``keep_runs`` / ``keep_days``: the job's retention (``None``: the cluster's setting).
        """
        body: dict[str, Any] = {
            "name": name,
            "schedule": schedule,
            "interpreter": interpreter,
            "timeout": timeout,
            "tz": tz,
            "update": update,
            "max_attempts": max_attempts,
        }
        body.update({k: v for k, v in (("keep_runs", keep_runs), ("keep_days", keep_days)) if v is not None})
        body.update(_script_fields(script))
        try:
            return self.call("SCHEDULE", body)
        except NotFoundError as exc:
            raise _no_local_file_either(exc, str(script)) from None

    def schedule_many(
        self,
        jobs: Iterable[Mapping[str, Any]],
        update: bool = False,
        chunk_size: int = SCHEDULE_MANY_CHUNK,
    ) -> dict[str, Any]:
        """Register many jobs with SCHEDULE_MANY, ``chunk_size`` (at most 5,000) per request.

        Each job is a mapping with ``name``, ``schedule``, ``interpreter``, ``script`` (a local file,
        uploaded, or a location in object storage) and optionally ``tz``, ``timeout`` and
        ``max_attempts``.  Each job stands alone: the valid ones are registered whatever happens to
        the others.  Returns ``{"created": [names], "updated": [names], "failed": [...]}``, each
        failure with the job's ``index`` in ``jobs``, its ``name``, ``error`` and ``message`` (a job
        whose script is a missing local path, such as ``./x.py``, fails without being sent).  A
        request that fails as a whole (no node answers) raises; the chunks sent before it stay
        registered.
        """
        if not 1 <= chunk_size <= SCHEDULE_MANY_CHUNK:
            raise ValidationError(f"chunk_size must be between 1 and {SCHEDULE_MANY_CHUNK}")
        total: dict[str, Any] = {"created": [], "updated": [], "failed": []}
        batch: builtins.list[dict[str, Any]] = []
        where: builtins.list[tuple[int, str | None]] = []  # each batch item's index in jobs, its key
        size = 0

        def send() -> None:
            nonlocal batch, where, size
            if batch:
                reply = self.call(
                    "SCHEDULE_MANY", {"jobs": batch, "update": update}, timeout=max(self.timeout, 120.0)
                )
                total["created"].extend(reply["created"])
                total["updated"].extend(reply["updated"])
                for failure in reply["failed"]:
                    index, key = where[failure["index"]]
                    if key is not None and failure.get("error") == "NotFoundError":
                        message = str(_no_local_file_either(NotFoundError(failure["message"]), key))
                        failure = {**failure, "message": message}
                    total["failed"].append({**failure, "index": index})
            batch, where, size = [], [], 0

        scripts: dict[str, dict[str, Any] | ValidationError] = {}  # a local file is read once
        for index, job in enumerate(jobs):
            body = {k: v for k, v in job.items() if k != "script"}
            key = None
            if "script" in job:
                script = job["script"]
                text = str(script)
                if text not in scripts:
                    try:
                        scripts[text] = _script_fields(script)
                    except ValidationError as exc:
                        scripts[text] = exc
                fields = scripts[text]
                if isinstance(fields, ValidationError):  # reported like the node's failures
                    name = job.get("name")
                    total["failed"].append(
                        {
                            "index": index,
                            "name": name if isinstance(name, str) else None,
                            "error": "ValidationError",
                            "message": str(fields),
                        }
                    )
                    continue
                body.update(fields)
                key = text if "script" in fields and "://" not in text else None
            cost = len(encode_body(body)) + 1
            if batch and (len(batch) >= chunk_size or size + cost > CHUNK_BYTES):
                send()
            batch.append(body)
            where.append((index, key))
            size += cost
        send()
        total["failed"].sort(key=lambda failure: int(failure["index"]))
        return total

    def enable(self, name: str) -> dict[str, Any]:
        return self.call("ENABLE", {"name": name})

    def disable(self, name: str) -> dict[str, Any]:
        return self.call("DISABLE", {"name": name})

    def list(
        self, limit: int = 100, after: str | None = None, state: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """One page of jobs, by name: up to ``limit`` (at most 1,000) named after ``after``, all of
        them or only the ``enabled`` or ``disabled`` ones.  :meth:`list_page` also gives the cursor
        of the next page; :meth:`iter_jobs` walks every page."""
        return builtins.list(self.list_page(limit, after, state)["jobs"])

    def list_page(self, limit: int = 100, after: str | None = None, state: str | None = None) -> dict[str, Any]:
        """LIST's reply: ``{"jobs": [...], "next": CURSOR or None}`` (pass ``next`` as ``after``)."""
        body: dict[str, Any] = {"limit": limit}
        if after is not None:
            body["after"] = after
        if state is not None:
            body["state"] = state
        return self.call("LIST", body)

    def iter_jobs(self, state: str | None = None, page_size: int = 1000, after: str | None = None) -> Iterator[dict[str, Any]]:
        """Every job (named after ``after``, if given), by name, fetched one page at a time."""
        cursor = after
        while True:
            reply = self.list_page(page_size, cursor, state)
            yield from reply["jobs"]
            cursor = reply.get("next")
            if not cursor:
                return

    def show(self, name: str, count: int = 3) -> dict[str, Any]:
        return self.call("SHOW", {"name": name, "count": count})

    def executions(self, name: str, limit: int = 20, page: int = 1) -> builtins.list[dict[str, Any]]:
        return builtins.list(
            self.call("EXECUTIONS", {"name": name, "limit": limit, "page": page})["executions"]
        )

    def execution(self, execution_id: str) -> dict[str, Any] | None:
        """The execution ``JOB@FIRE_TIME#ATTEMPT`` (as :meth:`executions` lists it), or ``None``
        if it is not among its job's 2,000 newest executions (an attempt not started yet)."""
        job, _, rest = execution_id.partition("@")
        if not job or "#" not in rest:
            raise ValidationError(f"{execution_id!r} is not an execution id (JOB@FIRE_TIME#ATTEMPT)")
        for page in range(1, LOOKUP_PAGES + 1):
            rows = self.executions(job, limit=LOOKUP_PAGE, page=page)
            for row in rows:
                if row["id"] == execution_id:
                    return row
            if len(rows) < LOOKUP_PAGE:
                break
        return None

    def wait_execution(
        self, execution_id: str, timeout: float = 60.0, interval: float = 0.2
    ) -> dict[str, Any]:
        """Wait until the execution has ended and its log is uploaded; return it.

        An execution with status ``error`` never started and has no log; one that ended while
        object storage was down is returned when ``timeout`` passes, with ``log`` still unset.
        :class:`DcronError` if the execution has not ended within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.execution(execution_id)
            ended = found is not None and found["status"] != "running"
            if found is not None and ended and (found["log"] or found["status"] == "error"):
                return found
            if time.monotonic() >= deadline:
                if found is not None and ended:
                    return found
                state = "has not started" if found is None else f"is still {found['status']}"
                raise DcronError(f"execution {execution_id} {state} after {timeout:g}s")
            time.sleep(interval)

    def run(self, name: str) -> dict[str, Any]:
        """Run ``name`` now: ``{"queued": False, "execution": ID, "fire_time": ...}``, or
        ``{"queued": True, "execution": ID, ...}`` when a run of it is in progress: run ``ID``
        starts when it ends (one run waits at most: asking again while it waits gives its ``ID``
        again).  The leader holds a waiting run in memory: if the leader changes first, ``ID``
        does not run."""
        return self.call("RUN", {"name": name})

    def status(self) -> dict[str, Any]:
        return self.call("STATUS")

    def log_chunks(self, execution: str) -> Iterator[bytes]:
        """The execution's log, in pieces as they are read from object storage.

        :class:`NotFoundError` when it has none; for a run that never started (status ``error``)
        the message says so and gives the reason.
        """
        offset = 0
        while True:
            try:
                reply = self.call("LOGS", {"execution": execution, "offset": offset})
            except NotFoundError as exc:
                raise self._why_no_log(execution, exc) from None
            data = base64.b64decode(reply["data"])
            if data:
                yield data
            offset += len(data)
            if reply["eof"] or not data:
                return

    def logs(self, execution: str) -> bytes:
        return b"".join(self.log_chunks(execution))

    def tail(self, execution: str, offset: int = 0, length: int | None = None) -> dict[str, Any]:
        """TAIL: the execution's log from ``offset``, whether the run is in progress or ended.

        ``{"execution", "status", "offset", "size", "data" (base64), "eof", "running"}``: ``running``
        true means more may come (ask again from ``offset`` plus the bytes received); ``running``
        false with ``eof`` true means the whole log has been read.  Any node answers.
        """
        body: dict[str, Any] = {"execution": execution, "offset": offset}
        if length is not None:
            body["length"] = length
        return self.call("TAIL", body)

    def follow_log(self, execution: str, poll: float = 0.5, deadline: float | None = None) -> Iterator[bytes]:
        """The execution's log as it grows, in pieces, until the run has ended and all of it was
        read; asks again every ``poll`` seconds while it waits for more.  :class:`DcronError` when
        it is still going after ``deadline`` seconds (``None``: no limit); an execution not
        recorded yet is waited for a few seconds (a run just asked for), then :class:`NotFoundError`."""
        started = time.monotonic()
        end = None if deadline is None else started + deadline
        offset = 0
        while True:
            try:
                reply = self.tail(execution, offset)
            except NotFoundError as exc:
                if offset or "no execution" not in str(exc) or time.monotonic() - started >= START_WAIT:
                    raise
                time.sleep(poll)
                continue
            data = base64.b64decode(reply["data"])
            if data:
                yield data
                offset += len(data)
            if reply["eof"] and not reply["running"]:
                return
            if reply["eof"] or not data:  # caught up: wait for more
                if end is not None and time.monotonic() >= end:
                    raise DcronError(f"execution {execution} is still {reply['status']} after {deadline:g}s")
                time.sleep(poll)

    def _why_no_log(self, execution: str, exc: NotFoundError) -> NotFoundError:
        if "no uploaded log" not in str(exc):
            return exc
        try:
            found = self.execution(execution)
        except DcronError:
            return exc
        if found is None or found["status"] not in ("error", "lost"):
            return exc
        reason = found.get("reason") or "no reason recorded"
        if found["status"] == "error":
            return NotFoundError(f"execution {execution} never started, so it has no log: {reason}")
        return NotFoundError(f"execution {execution} was lost ({reason}) and has no uploaded log")
