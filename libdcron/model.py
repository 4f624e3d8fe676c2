"""Jobs and executions: typed records, validated at the boundary, marshalled in one place.

Documents in the store are plain JSON objects; :meth:`Job.to_doc` / :meth:`Job.from_doc` (and the
same on :class:`Execution`) are the only places that know their shape.  Instants are aware UTC
``datetime`` values inside the program and ISO 8601 strings (``2026-11-26T21:34:00Z``) on the
wire and in the store, so that they sort as text.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .errors import ValidationError
from .zone_transitions import EMPTY_ZONE

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME = 100
DEFAULT_MAX_ATTEMPTS = 3
MAX_TIMEOUT = 366 * 24 * 3600
#: Longest accepted values of a job's string fields (README, "Limits").
MAX_SCHEDULE = 256
MAX_TZ = 64
MAX_INTERPRETER = 64
MAX_LOCATION = 1024
#: Largest accepted retention limits of a job or a cluster (0 means no limit of that kind).
MAX_KEEP_RUNS = 1_000_000
MAX_KEEP_DAYS = 36_500


class Status(enum.StrEnum):
    """What became of one attempt of one fire time."""

    RUNNING = "running"  # the worker accepted it; the process starts at the fire instant
    SUCCEEDED = "succeeded"  # exit code 0
    FAILED = "failed"  # non-zero exit code or killed by a signal
    TIMEOUT = "timeout"  # killed at the job's timeout; the leader retries on another worker
    LOST = "lost"  # its worker died mid-run; the leader retries on another worker
    ERROR = "error"  # could not start: missing script, checksum mismatch, interpreter missing

    @property
    def terminal(self) -> bool:
        return self is not Status.RUNNING

    @property
    def retried(self) -> bool:
        """Whether the leader runs another attempt of the same fire time after this one."""
        return self in (Status.TIMEOUT, Status.LOST)


def utcnow() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=8192)  # many runs share a fire time: each is written many times
def format_instant(value: datetime) -> str:
    """``2026-11-26T21:34:00Z`` or ``...:00.250000Z``: fixed width per precision, sorts as text."""
    v = value.astimezone(UTC)
    text = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if v.microsecond:
        text += f".{v.microsecond:06d}"
    return text + "Z"


def parse_instant(text: str, what: str = "instant") -> datetime:
    """Parse an ISO 8601 instant; a naive one is taken as UTC."""
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be an ISO 8601 string, got {type(text).__name__}")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValidationError(
            f"{what} {text!r} is not an ISO 8601 instant (e.g. 2026-11-26T21:34:00Z)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValidationError("job name must be a non-empty string")
    if len(name) > MAX_NAME:
        raise ValidationError(f"job name is {len(name)} characters long; at most {MAX_NAME} are allowed")
    if not NAME_RE.fullmatch(name):
        raise ValidationError(
            f"job name {name!r} may hold only letters, digits, '.', '_' and '-', and must start "
            "with a letter or digit"
        )
    return name


def _int(value: object, what: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValidationError(f"{what} must be between {minimum} and {maximum}, got {value}")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class Job:
    """A registered job.  Jobs are never deleted, only disabled."""

    name: str
    schedule: str
    interpreter: str
    script: str  # URL of the script in object storage
    script_sha256: str | None = None
    timeout: int = 0  # seconds; 0 waits forever
    tz: str = "UTC"
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    enabled: bool = True
    version: int = 1  # bumped on every update; part of the script cache key
    #: Retention (libdcron.retention): executions of the newest N fire times / of the last D days
    #: are kept; None follows the cluster's setting, 0 sets no limit of that kind.
    keep_runs: int | None = None
    keep_days: int | None = None
    created: str = ""
    updated: str = ""
    rev: str | None = field(default=None, compare=False)

    def validate(self) -> Job:
        validate_name(self.name)
        for what, value, limit in (
            ("schedule", self.schedule, MAX_SCHEDULE),
            ("tz", self.tz, MAX_TZ),
            ("interpreter", self.interpreter, MAX_INTERPRETER),
            ("script", self.script, MAX_LOCATION),
        ):
            if isinstance(value, str) and len(value) > limit:
                raise ValidationError(f"{what} is {len(value)} characters long; at most {limit} are allowed")
        if not isinstance(self.schedule, str) or not self.schedule.strip():
            raise ValidationError("schedule must be a non-empty cron expression")
        if not isinstance(self.interpreter, str) or not self.interpreter:
            raise ValidationError("interpreter must be a non-empty name such as python, ruby or sh")
        if not isinstance(self.script, str) or not self.script:
            raise ValidationError("script must be the location of a script in object storage")
        if self.script_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.script_sha256):
            raise ValidationError("script_sha256 must be 64 lowercase hex digits")
        _int(self.timeout, "timeout", 0, MAX_TIMEOUT)
        _int(self.max_attempts, "max_attempts", 1, 100)
        if self.keep_runs is not None:
            _int(self.keep_runs, "keep_runs", 0, MAX_KEEP_RUNS)
        if self.keep_days is not None:
            _int(self.keep_days, "keep_days", 0, MAX_KEEP_DAYS)
        if not isinstance(self.tz, str):
            raise ValidationError("tz must be an IANA time zone name such as Europe/Paris")
        if not self.tz:
            raise ValidationError(EMPTY_ZONE)  # the message parse_schedule gives for tz ''
        return self

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "job",
            "name": self.name,
            "schedule": self.schedule,
            "interpreter": self.interpreter,
            "script": self.script,
            "script_sha256": self.script_sha256,
            "timeout": self.timeout,
            "tz": self.tz,
            "max_attempts": self.max_attempts,
            "enabled": self.enabled,
            "version": self.version,
            "created": self.created,
            "updated": self.updated,
        }
        # Only when set: documents of jobs without them keep their shape (and their size).
        if self.keep_runs is not None:
            doc["keep_runs"] = self.keep_runs
        if self.keep_days is not None:
            doc["keep_days"] = self.keep_days
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Job:
        try:
            return cls(
                name=doc["name"],
                schedule=doc["schedule"],
                interpreter=doc["interpreter"],
                script=doc["script"],
                script_sha256=doc.get("script_sha256"),
                timeout=int(doc.get("timeout", 0)),
                tz=doc.get("tz", "UTC"),
                max_attempts=int(doc.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
                enabled=bool(doc.get("enabled", True)),
                version=int(doc.get("version", 1)),
                created=doc.get("created", ""),
                updated=doc.get("updated", ""),
                keep_runs=_optional_int(doc.get("keep_runs")),
                keep_days=_optional_int(doc.get("keep_days")),
                rev=doc.get("_rev"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"job document is malformed: {exc}") from None

    def with_changes(self, **changes: Any) -> Job:
        return replace(self, **changes)


def execution_id(job: str, fire_time: datetime, attempt: int) -> str:
    """Deterministic id: a second insert of the same attempt conflicts instead of running twice."""
    return f"{job}@{format_instant(fire_time)}#{attempt}"


def log_key(job: str, fire_time: datetime, attempt: int) -> str:
    """Where an attempt's log goes in object storage: ``logs/JOB/FIRE_TIME_ATTEMPT.log``, one
    folder per job (not one per fire time: a folder made and removed per run is the most costly
    part of a run's end on a local file system)."""
    return f"logs/{job}/{format_instant(fire_time)}_{attempt}.log"


def legacy_log_key(job: str, fire_time: datetime, attempt: int) -> str:
    """The key of logs written before :func:`log_key` (``logs/JOB/FIRE_TIME/ATTEMPT.log``)."""
    return f"logs/{job}/{format_instant(fire_time)}/{attempt}.log"


@dataclass(frozen=True)
class Execution:
    """One attempt of one fire time of one job.  Created when it starts, completed when it ends."""

    job: str
    fire_time: datetime
    attempt: int
    node: str
    status: Status
    started: datetime | None = None
    ended: datetime | None = None
    exit_code: int | None = None
    log: str | None = None  # URL of the log in object storage
    reason: str | None = None  # why it failed to start, was lost, timed out
    manual: bool = False  # started by `dcron run`, not by the schedule
    incarnation: str | None = None  # the worker process's id: a restarted node is a new incarnation
    rev: str | None = field(default=None, compare=False)

    @functools.cached_property
    def id(self) -> str:
        return execution_id(self.job, self.fire_time, self.attempt)

    def to_doc(self) -> dict[str, Any]:
        return {
            "type": "execution",
            "job": self.job,
            "fire_time": format_instant(self.fire_time),
            "attempt": self.attempt,
            "node": self.node,
            "status": self.status.value,
            "started": format_instant(self.started) if self.started else None,
            "ended": format_instant(self.ended) if self.ended else None,
            "exit_code": self.exit_code,
            "log": self.log,
            "reason": self.reason,
            "manual": self.manual,
            "incarnation": self.incarnation,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Execution:
        try:
            return cls(
                job=doc["job"],
                fire_time=parse_instant(doc["fire_time"]),
                attempt=int(doc["attempt"]),
                node=doc.get("node", ""),
                status=Status(doc["status"]),
                started=parse_instant(doc["started"]) if doc.get("started") else None,
                ended=parse_instant(doc["ended"]) if doc.get("ended") else None,
                exit_code=doc.get("exit_code"),
                log=doc.get("log"),
                reason=doc.get("reason"),
                manual=bool(doc.get("manual", False)),
                incarnation=doc.get("incarnation"),
                rev=doc.get("_rev"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"execution document is malformed: {exc}") from None

    def with_changes(self, **changes: Any) -> Execution:
        return replace(self, **changes)

    def to_wire(self) -> dict[str, Any]:
        doc = self.to_doc()
        del doc["type"]
        doc["id"] = self.id
        return doc
