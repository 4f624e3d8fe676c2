"""A Python client of the dcron API: what the CLI uses, and what embedding code can use.

It talks to any node; given several endpoints it tries them in order until one answers.
"""

from __future__ import annotations

import base64
import builtins
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .config import default_data_dir
from .errors import UnavailableError, ValidationError
from .transport.keys import Security, client_security
from .transport.zmq import ZmqTransport

READS = {"PING", "STATUS", "LIST", "SHOW", "EXECUTIONS", "LOGS"}


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

    def call(self, command: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send to the first node that answers.  Writes are not re-sent to the same node."""
        retries = 1 if command in READS else 0
        last: UnavailableError | None = None
        for endpoint in self.endpoints:
            try:
                return self.transport.request(
                    endpoint, command, body or {}, timeout=self.timeout, retries=retries
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
        path = Path(script)
        if "://" not in str(script) and path.is_file():
            body["script_content"] = base64.b64encode(path.read_bytes()).decode()
        else:
            body["script"] = str(script)
        return self.call("SCHEDULE", body)

    def enable(self, name: str) -> dict[str, Any]:
        return self.call("ENABLE", {"name": name})

    def disable(self, name: str) -> dict[str, Any]:
        return self.call("DISABLE", {"name": name})

    def list(self) -> builtins.list[dict[str, Any]]:
        return builtins.list(self.call("LIST")["jobs"])

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
