"""Registering jobs: SCHEDULE and SCHEDULE_MANY, and where their scripts may come from."""

import base64
import binascii
import hashlib
from datetime import datetime
from typing import Any

from .abc import Interpreter
from .api_base import (
    MAX_BATCH,
    MAX_SCRIPT,
    NodeView,
    _int,
    _str,
)
from .errors import ConflictError, DcronError, NotFoundError, ValidationError
from .model import (
    MAX_INTERPRETER,
    MAX_KEEP_DAYS,
    MAX_KEEP_RUNS,
    MAX_SCHEDULE,
    MAX_TZ,
    Job,
    format_instant,
    utcnow,
    validate_name,
)
from .records import Records
from .redact import redact_url
from .schedule import parse_schedule


def _keep(body: dict[str, Any], key: str, most: int) -> int | None:
    """A retention field: absent or null follows the cluster's setting; 0 sets no limit."""
    return None if body.get(key) is None else _int(body, key, 0, 0, most)


class RegistrationApi:
    """The API's job-registration commands (a base of :class:`libdcron.api.Api`)."""

    node: NodeView
    records: Records

    def _get_job(self, name: str) -> Job:
        return self.records.job(validate_name(name))

    def _job_fields(
        self, body: dict[str, Any], known: dict[str, Interpreter] | None = None
    ) -> tuple[dict[str, Any], str]:
        """A job body's fields (all but the script) checked without any I/O, and the suffix of its
        interpreter's scripts; ``known``: the node's interpreters, when the caller has them."""
        name = validate_name(body.get("name"))
        expression = _str(body, "schedule", limit=MAX_SCHEDULE) or ""
        tz = _str(body, "tz", required=False, limit=MAX_TZ)
        tz = "UTC" if tz is None else tz  # an empty zone is refused, as everywhere
        parse_schedule(expression, tz)  # raises with position and reason
        interpreter = _str(body, "interpreter", limit=MAX_INTERPRETER) or ""
        known = self.node.plugins.interpreters() if known is None else known
        if interpreter not in known:
            raise ValidationError(
                f"unknown interpreter {interpreter!r}; this node knows {', '.join(sorted(known))}"
            )
        fields = {
            "name": name,
            "schedule": expression,
            "interpreter": interpreter,
            "timeout": _int(body, "timeout", 0, 0, 366 * 24 * 3600),
            "tz": tz,
            "max_attempts": _int(body, "max_attempts", 3, 1, 100),
            "keep_runs": _keep(body, "keep_runs", MAX_KEEP_RUNS),
            "keep_days": _keep(body, "keep_days", MAX_KEEP_DAYS),
        }
        return fields, known[interpreter].suffix

    def schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        fields, suffix = self._job_fields(body)
        name = fields["name"]
        update = bool(body.get("update", False))
        script, sha = self._script(body, name, suffix)
        now = format_instant(utcnow())
        job = Job(**fields, script=script, script_sha256=sha, created=now, updated=now).validate()
        try:
            self.records.create_job(job)
            return {"job": job.to_doc(), "created": True, "next": self._next(job, 1)}
        except ConflictError:
            if not update:
                raise ConflictError(
                    f"a job named {name!r} already exists; pass update=True to change it"
                ) from None
        updated = self._update_job(job)
        return {"job": updated.to_doc(), "created": False, "next": self._next(updated, 1)}

    def _update_job(self, job: Job) -> Job:
        """Replace a registered job's definition, keeping its creation time and state."""

        def change(current: Job) -> Job:
            return job.with_changes(
                created=current.created, enabled=current.enabled, version=current.version + 1
            )

        updated, _ = self.records.change_job(job.name, change)
        return updated

    def schedule_many(self, body: dict[str, Any]) -> dict[str, Any]:
        """SCHEDULE_MANY: register up to :data:`MAX_BATCH` jobs in one request.

        ``{"jobs": [SCHEDULE bodies], "update": bool}``.  Each job stands alone: every valid job is
        registered, and each invalid one is reported in ``failed`` with its index in ``jobs``.  All
        of them are checked first (fields, schedule, interpreter; each distinct script location
        once); the new ones are then written in one bulk operation of the store; with ``update``
        the names already taken are changed one by one, as SCHEDULE does.  The reply:
        ``{"created": [names], "updated": [names], "failed": [{"index", "name", "error", "message"}]}``.
        """
        jobs = body.get("jobs")
        if not isinstance(jobs, list):
            raise ValidationError("jobs must be a list of job bodies")
        if len(jobs) > MAX_BATCH:
            raise ValidationError(f"{len(jobs)} jobs in one request; at most {MAX_BATCH} are allowed")
        update = bool(body.get("update", False))
        failed: list[dict[str, Any]] = []

        def fail(index: int, name: Any, exc: DcronError) -> None:
            shown = name if isinstance(name, str) else None
            failed.append({"index": index, "name": shown, "error": type(exc).__name__, "message": str(exc)})

        # 1. Fields, without I/O; a name given twice is refused the second time.
        known = self.node.plugins.interpreters()
        checked: list[tuple[int, dict[str, Any], str, dict[str, Any]]] = []
        first: dict[str, int] = {}
        for index, item in enumerate(jobs):
            if not isinstance(item, dict):
                fail(index, None, ValidationError(f"job {index} must be a JSON object"))
                continue
            try:
                fields, suffix = self._job_fields(item, known)
                name = fields["name"]
                if name in first:
                    raise ValidationError(
                        f"job {name!r} is given twice in this request (first at index {first[name]})"
                    )
                first[name] = index
                if item.get("script_content") is None:
                    fields["script"] = self._location(item)
                    fields["script_sha256"] = _str(item, "script_sha256", required=False, limit=64)
            except DcronError as exc:
                fail(index, item.get("name"), exc)
                continue
            checked.append((index, fields, suffix, item))

        # 2. Scripts: each distinct location looked up once; contents uploaded.
        found: dict[str, DcronError | None] = {}
        now = format_instant(utcnow())
        ready: list[tuple[int, Job]] = []
        for index, fields, suffix, item in checked:
            try:
                if "script" in fields:
                    location = fields["script"]
                    if location not in found:
                        try:
                            self._check_location(location)
                            found[location] = None
                        except DcronError as exc:
                            found[location] = exc
                    problem = found[location]
                    if problem is not None:
                        raise problem
                else:
                    fields["script"], fields["script_sha256"] = self._script(item, fields["name"], suffix)
                ready.append((index, Job(**fields, created=now, updated=now).validate()))
            except DcronError as exc:
                fail(index, fields["name"], exc)

        # 3. One bulk write; the taken names conflict, or are updated one by one.
        created: list[str] = []
        updated: list[str] = []
        results = self.records.create_jobs([job for _, job in ready]) if ready else []
        for (index, job), result in zip(ready, results, strict=True):
            if not isinstance(result, ConflictError):
                created.append(job.name)
            elif not update:
                fail(
                    index,
                    job.name,
                    ConflictError(f"a job named {job.name!r} already exists; pass update=True to change it"),
                )
            else:
                try:
                    self._update_job(job)
                    updated.append(job.name)
                except DcronError as exc:
                    fail(index, job.name, exc)
        failed.sort(key=lambda entry: int(entry["index"]))
        return {"created": created, "updated": updated, "failed": failed}

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
        location = self._location(body)
        self._check_location(location)
        return location, _str(body, "script_sha256", required=False, limit=64)

    def _location(self, body: dict[str, Any]) -> str:
        """The URL of the script a body names by location (a URL, or a key of the object store)."""
        location = _str(body, "script") or ""
        if "://" not in location:
            if location.startswith("/") or not location.strip("/"):
                raise ValidationError(
                    f"script {location!r} is neither a URL nor a key relative to the object store; "
                    "pass a local file, a key such as jobs/x.py, or a URL inside the object store"
                )
            location = self.node.objects.url_for(location)
        return location

    def _check_location(self, location: str) -> None:
        """:class:`NotFoundError` unless the script is there, in an allowed object store."""
        store = self.node.resolve_objects(location)  # refuses what lies outside the allowed stores
        if not store.exists(location):
            raise NotFoundError(
                f"script {redact_url(location)} not found in object storage; upload it or pass a local file"
            )

    def _next(self, job: Job, count: int, now: datetime | None = None) -> list[str]:
        if not job.enabled:
            return []
        schedule = parse_schedule(job.schedule, job.tz)
        out, at = [], now or utcnow()
        for _ in range(count):
            at = schedule.next_after(at)
            out.append(format_instant(at))
        return out
