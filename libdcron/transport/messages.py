"""Typed bodies of the node-to-node messages, built and parsed in one place.

:mod:`libdcron.transport.protocol` frames a message; this module says what the JSON body of each
node command holds.  The sender builds a message and calls :meth:`to_body`; the receiver calls
:meth:`from_body`, which raises :class:`ValidationError` for anything malformed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import ValidationError
from ..model import Execution, Job, format_instant, parse_instant, validate_name


def _object(body: Mapping[str, Any], key: str, command: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise ValidationError(f"{command} needs {key!r} as a JSON object")
    return value


@dataclass(frozen=True)
class Dispatch:
    """Leader -> worker: run ``attempt`` of ``job`` at ``fire_time``."""

    job: Job
    fire_time: datetime
    attempt: int
    leader: str = ""
    manual: bool = False

    def to_body(self) -> dict[str, Any]:
        return {
            "job": self.job.to_doc(),
            "fire_time": format_instant(self.fire_time),
            "attempt": self.attempt,
            "manual": self.manual,
            "leader": self.leader,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Dispatch:
        job = Job.from_doc(_object(body, "job", "DISPATCH")).validate()
        attempt = body.get("attempt")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or not 1 <= attempt <= job.max_attempts:
            raise ValidationError(f"DISPATCH attempt must be between 1 and {job.max_attempts}, got {attempt!r}")
        leader = body.get("leader", "")
        if not isinstance(leader, str):
            raise ValidationError("DISPATCH's leader must be the sending leader's node id")
        return cls(
            job=job,
            fire_time=parse_instant(body.get("fire_time"), "fire_time"),  # type: ignore[arg-type]
            attempt=attempt,
            leader=leader,
            manual=bool(body.get("manual", False)),
        )


#: Most runs one DISPATCH may carry.
MAX_DISPATCH_RUNS = 1000


@dataclass(frozen=True)
class DispatchBatch:
    """Leader -> worker: many runs in one DISPATCH (``{"leader": L, "runs": [run, ...]}``, each
    run a :class:`Dispatch` body without ``leader``).  The reply holds one :class:`DispatchReply`
    per run, in order (``{"replies": [...]}``).

    Parsing checks the envelope only; :meth:`parse_run` parses one run, so that one malformed
    run is declined on its own instead of failing the others.
    """

    leader: str
    runs: list[dict[str, Any]]

    @staticmethod
    def of(leader: str, runs: list[Dispatch]) -> dict[str, Any]:
        bodies = []
        for run in runs:
            body = run.to_body()
            del body["leader"]
            bodies.append(body)
        return {"leader": leader, "runs": bodies}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> DispatchBatch:
        runs, leader = body.get("runs"), body.get("leader", "")
        if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
            raise ValidationError("DISPATCH's runs must be a non-empty list of JSON objects")
        if len(runs) > MAX_DISPATCH_RUNS:
            raise ValidationError(f"DISPATCH carries {len(runs)} runs; at most {MAX_DISPATCH_RUNS} are accepted")
        if not isinstance(leader, str):
            raise ValidationError("DISPATCH's leader must be the sending leader's node id")
        return cls(leader, runs)

    def parse_run(self, index: int) -> Dispatch:
        return Dispatch.from_body({**self.runs[index], "leader": self.leader})

    @staticmethod
    def replies(body: Mapping[str, Any], count: int) -> list[DispatchReply]:
        """The per-run replies of a batch reply (a malformed or short answer declines the rest)."""
        answers = body.get("replies")
        answers = answers if isinstance(answers, list) else []
        out = [DispatchReply.from_body(a) if isinstance(a, dict) else DispatchReply(False) for a in answers[:count]]
        return out + [DispatchReply(False, reason="no answer")] * (count - len(out))


@dataclass(frozen=True)
class DispatchReply:
    """Worker -> leader: accepted, or declined as busy/stopping, or a duplicate of a running attempt."""

    accepted: bool
    node: str | None = None
    reason: str | None = None
    duplicate: bool = False

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"accepted": self.accepted}
        if self.node is not None:
            body["node"] = self.node
        if self.reason is not None:
            body["reason"] = self.reason
        if self.duplicate:
            body["duplicate"] = True
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> DispatchReply:
        node, reason = body.get("node"), body.get("reason")
        return cls(
            accepted=body.get("accepted") is True,
            node=node if isinstance(node, str) else None,
            reason=reason if isinstance(reason, str) else None,
            duplicate=body.get("duplicate") is True,
        )


@dataclass(frozen=True)
class Finished:
    """Worker -> leader: an attempt ended (the leader also sees it later through the store)."""

    execution: Execution

    def to_body(self) -> dict[str, Any]:
        return {"execution": self.execution.to_doc()}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Finished:
        return cls(Execution.from_doc(_object(body, "execution", "FINISHED")))


@dataclass(frozen=True)
class FinishedBatch:
    """Worker -> leader: several attempts ended (``{"executions": [...]}``)."""

    executions: list[Execution]

    def to_body(self) -> dict[str, Any]:
        return {"executions": [ex.to_doc() for ex in self.executions]}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> FinishedBatch:
        if "executions" not in body:
            return cls([Finished.from_body(body).execution])
        docs = body.get("executions")
        if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
            raise ValidationError("FINISHED's executions must be a list of JSON objects")
        if len(docs) > MAX_DISPATCH_RUNS:
            raise ValidationError(f"FINISHED carries {len(docs)} executions; at most {MAX_DISPATCH_RUNS}")
        return cls([Execution.from_doc(d) for d in docs])


@dataclass(frozen=True)
class RunNow:
    """Any node -> leader: run a job now, outside its schedule."""

    name: str

    def to_body(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RunNow:
        return cls(validate_name(body.get("name")))
