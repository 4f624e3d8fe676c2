"""A Python client of the dcron API: what the CLI uses, and what embedding code can use.

It talks to any node; given several endpoints it tries them in order until one answers.
"""

from __future__ import annotations

import base64
import builtins
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import default_data_dir
from .errors import UnavailableError, ValidationError
from .transport.keys import Security, client_security
from .transport.protocol import encode_body
from .transport.zmq import ZmqTransport

READS = {"PING", "STATUS", "LIST", "SHOW", "EXECUTIONS", "LOGS"}
#: Jobs per SCHEDULE_MANY request that :meth:`Client.schedule_many` sends (the node takes 10,000).
SCHEDULE_MANY_CHUNK = 5000
#: Encoded bytes per SCHEDULE_MANY request at most, well within the protocol's 8 MiB body.
CHUNK_BYTES = 6 * 1024 * 1024


def _script_fields(script: str | Path) -> dict[str, Any]:
    """``script_content`` for a local file (uploaded), else ``script``: a location in object storage."""
    path = Path(script)
    if "://" not in str(script) and path.is_file():
        return {"script_content": base64.b64encode(path.read_bytes()).decode()}
    return {"script": str(script)}


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
        if isinstance(endpoints, str):
            endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise ValidationError("no node endpoint given (set --endpoint or DCRON_ENDPOINT)")
        self.endpoints = list(endpoints)
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
        """Send to the first node that answers.  Writes are not re-sent to the same node."""
        retries = 1 if command in READS else 0
        last: UnavailableError | None = None
        for endpoint in self.endpoints:
            try:
                return self.transport.request(
                    endpoint, command, body or {}, timeout=timeout or self.timeout, retries=retries
                )
            except UnavailableError as exc:
                last = exc
        assert last is not None
        if len(self.endpoints) > 1:
            raise UnavailableError(f"no node answered ({', '.join(self.endpoints)}): {last}")
        raise last

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
    ) -> dict[str, Any]:
        """Register (or with ``update``, change) a job.

        ``script`` is a local file (uploaded, its sha256 recorded) when such a file exists, else
        the location of a script already in object storage (``s3://...``, or a key).
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
        body.update(_script_fields(script))
        return self.call("SCHEDULE", body)

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
        failure with the job's ``index`` in ``jobs``, its ``name``, ``error`` and ``message``.  A
        request that fails as a whole (no node answers) raises; the chunks sent before it stay
        registered.
        """
        if not 1 <= chunk_size <= SCHEDULE_MANY_CHUNK:
            raise ValidationError(f"chunk_size must be between 1 and {SCHEDULE_MANY_CHUNK}")
        total: dict[str, Any] = {"created": [], "updated": [], "failed": []}
        batch: builtins.list[dict[str, Any]] = []
        size = 0
        offset = 0

        def send() -> None:
            nonlocal batch, size, offset
            if batch:
                reply = self.call(
                    "SCHEDULE_MANY", {"jobs": batch, "update": update}, timeout=max(self.timeout, 120.0)
                )
                total["created"].extend(reply["created"])
                total["updated"].extend(reply["updated"])
                total["failed"].extend({**f, "index": f["index"] + offset} for f in reply["failed"])
            offset += len(batch)
            batch, size = [], 0

        scripts: dict[str, dict[str, Any]] = {}  # a local file is read once, however many jobs run it
        for job in jobs:
            body = {k: v for k, v in job.items() if k != "script"}
            if "script" in job:
                script = str(job["script"])
                if script not in scripts:
                    scripts[script] = _script_fields(script)
                body.update(scripts[script])
            cost = len(encode_body(body)) + 1
            if batch and (len(batch) >= chunk_size or size + cost > CHUNK_BYTES):
                send()
            batch.append(body)
            size += cost
        send()
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

    def run(self, name: str) -> dict[str, Any]:
        return self.call("RUN", {"name": name})

    def status(self) -> dict[str, Any]:
        return self.call("STATUS")

    def log_chunks(self, execution: str) -> Iterator[bytes]:
        offset = 0
        while True:
            reply = self.call("LOGS", {"execution": execution, "offset": offset})
            data = base64.b64decode(reply["data"])
            if data:
                yield data
            offset += len(data)
            if reply["eof"] or not data:
                return

    def logs(self, execution: str) -> bytes:
        return b"".join(self.log_chunks(execution))
