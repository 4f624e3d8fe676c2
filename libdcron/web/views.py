"""What the dashboard's pages show, read from the node it runs in (blocking calls, run off the loop).

Every read goes through the node's :class:`~libdcron.api.Api` or :class:`~libdcron.records.Records`,
the same code the wire commands use, so a page shows what ``dcron`` would print.
"""

from __future__ import annotations

import base64
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import DcronError, ValidationError
from ..model import Status

log = logging.getLogger(__name__)

#: Jobs a name filter reads at most for one page before it answers with what it found and a cursor.
MAX_SCAN = 20_000
#: Executions shown per page.
RUNS_PAGE = 50
#: Bytes of a finished log shown in the page (the whole log is a download away).
INLINE_LOG = 256 * 1024
STATUSES = tuple(s.value for s in Status)


@dataclass
class JobsPage:
    jobs: list[dict[str, Any]]
    next: str | None
    scanned: int


class Views:
    """The dashboard's reads (and, when allowed, its three write actions) against one node."""

    def __init__(self, node: Any) -> None:
        self.node = node

    @property
    def api(self) -> Any:
        return self.node.api

    # -- jobs ------------------------------------------------------------------------------

    def jobs(self, match: str, state: str, after: str | None, limit: int) -> JobsPage:
        """One page of jobs by name whose name contains ``match`` (any case), with their last run."""
        if not match:
            page = self.api.list({"limit": limit, "after": after, "state": state})
            found, cursor, scanned = page["jobs"], page["next"], len(page["jobs"])
        else:
            found, cursor, scanned = self._matching(match.lower(), state, after, limit)
        for job in found:
            last = self.api.records.executions(job["name"], limit=1)
            job["last"] = last[0].to_wire() if last else None
        return JobsPage(found, cursor, scanned)

    def _matching(
        self, match: str, state: str, after: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        found: list[dict[str, Any]] = []
        cursor, scanned = after, 0
        while scanned < MAX_SCAN:
            page = self.api.list({"limit": 1000, "after": cursor, "state": state})
            jobs = page["jobs"]
            for i, job in enumerate(jobs):
                scanned += 1
                cursor = job["name"]
                if match in job["name"].lower():
                    found.append(job)
                    if len(found) == limit:
                        last = i == len(jobs) - 1 and page["next"] is None
                        return found, None if last else cursor, scanned
            if page["next"] is None:
                return found, None, scanned
            cursor = page["next"]  # (a page by state may stop short of its limit, even at none)
        return found, cursor, scanned

    def job(self, name: str, status: str | None, page: int) -> dict[str, Any]:
        shown = self.api.show({"name": name, "count": 5})
        runs = self.api.records.executions(name, limit=RUNS_PAGE + 1, skip=(page - 1) * RUNS_PAGE, status=status)
        return {
            "job": shown["job"],
            "next": shown["next"],
            "runs": [ex.to_wire() for ex in runs[:RUNS_PAGE]],
            "more": len(runs) > RUNS_PAGE,
        }

    # -- runs ------------------------------------------------------------------------------

    def runs(self, status: str | None, match: str, page: int) -> dict[str, Any]:
        """Every job's executions, newest first, of one status and whose job name contains ``match``."""
        found = self.api.records.recent_executions(RUNS_PAGE + 1, skip=(page - 1) * RUNS_PAGE, status=status)
        runs = [ex.to_wire() for ex in found[:RUNS_PAGE]]
        if match:
            runs = [r for r in runs if match.lower() in r["job"].lower()]
        return {"runs": runs, "more": len(found) > RUNS_PAGE}

    def run(self, exec_id: str) -> dict[str, Any]:
        ex = self.api.records.execution(exec_id)
        view: dict[str, Any] = {"run": ex.to_wire(), "log": None, "log_size": None, "log_error": None}
        if ex.status.terminal and ex.log:
            try:
                chunk = self.api.logs({"execution": exec_id, "offset": 0, "length": INLINE_LOG})
            except DcronError as exc:
                view["log_error"] = str(exc)
            else:
                view["log"] = base64.b64decode(chunk["data"]).decode("utf-8", "replace")
                view["log_size"] = chunk["size"]
        return view

    def tail(self, exec_id: str, offset: int) -> dict[str, Any]:
        return dict(self.api.tail({"execution": exec_id, "offset": offset}))

    # -- cluster ---------------------------------------------------------------------------

    def cluster(self) -> dict[str, Any]:
        """This node's status, and each member's as it answers STATUS (1.5 s each, in parallel)."""
        here = self.api.status({})
        members = here["members"]
        with ThreadPoolExecutor(max(1, min(8, len(members)))) as pool:
            answers = list(pool.map(self._member_status, members, [here] * len(members)))
        return {"here": here, "members": answers}

    def _member_status(self, member: dict[str, Any], here: dict[str, Any]) -> dict[str, Any]:
        if member["node_id"] == here["node"]:
            return {"member": member, "status": here, "error": None}
        try:
            status = self.node.transport.request(member["endpoint"], "STATUS", {}, timeout=1.5, retries=0)
        except DcronError as exc:
            return {"member": member, "status": None, "error": str(exc)}
        return {"member": member, "status": status, "error": None}

    # -- write actions (only when the operator turned them on) ------------------------------

    def act(self, action: str, name: str) -> dict[str, Any]:
        if action == "enable":
            return dict(self.api.enable({"name": name}))
        if action == "disable":
            return dict(self.api.disable({"name": name}))
        if action == "run":
            return dict(self.api.run({"name": name}))
        raise ValidationError(f"unknown action {action!r}")
