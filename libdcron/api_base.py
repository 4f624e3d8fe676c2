"""What the API's modules share: field limits and checks, the next-fire cache, the node it serves."""

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from .abc import DocumentStore, Election, ObjectStore
from .config import NodeSettings
from .errors import ValidationError
from .leader import Leader
from .model import (
    MAX_LOCATION,
    Job,
    format_instant,
)
from .plugins import Plugins
from .recorder import Recorder
from .schedule import parse_schedule
from .worker import Worker

MAX_SCRIPT = 4 * 1024 * 1024
MAX_PAGE = 500
#: Jobs per LIST page: the default and the most a request may ask for.
LIST_PAGE = 100
MAX_LIST_PAGE = 1000
#: Jobs per SCHEDULE_MANY request (the body must also stay within the protocol's MAX_BODY).
MAX_BATCH = 10_000
#: LIST's ``state``: all jobs, or only the enabled or the disabled ones.
STATES: dict[str, bool | None] = {"all": None, "enabled": True, "disabled": False}
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


class NextFireCache:
    """The next fire instant of each (schedule, zone) LIST has shown, while it is still ahead.

    ``next_after(t)`` is the same instant ``n`` for every ``t`` from the moment it was computed
    (``t0``) up to ``n`` (there is no fire time in between), so an entry ``(t0, n)`` answers any
    ``t0 <= t < n`` exactly: jobs sharing an expression cost one computation, not one each.
    """

    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self._entries: dict[tuple[str, str], tuple[datetime, datetime, str]] = {}

    def get(self, job: Job, now: datetime) -> str | None:
        """``job``'s next fire instant after ``now`` (ISO 8601), ``None`` when there is none."""
        key = (job.schedule, job.tz)
        entry = self._entries.get(key)
        if entry is not None and entry[0] <= now < entry[1]:
            return entry[2]
        try:
            at = parse_schedule(job.schedule, job.tz).next_after(now)
        except ValidationError:
            return None
        if len(self._entries) >= self.size:
            self._entries.clear()  # rare; the next pages refill it
        text = format_instant(at)
        self._entries[key] = (now, at, text)
        return text


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
