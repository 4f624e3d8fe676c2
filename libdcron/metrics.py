"""Prometheus metrics of one node, in a registry of its own.

Several nodes can share a process (tests, an application embedding dcron), so nothing here uses
``prometheus_client``'s global default registry: each :class:`~libdcron.node.Node` makes one
:class:`Metrics` and hands it to its worker and its leader; :meth:`Metrics.render` gives the
exposition text.  A :class:`~libdcron.worker.Worker` or :class:`~libdcron.leader.Leader` made
without one gets a private instance, so the code counts unconditionally.

Errors of the document store and of object storage are counted by :func:`count_errors`, which
wraps the public methods of a store instance in place (its type does not change):
:class:`UnavailableError` and unexpected exceptions count, while :class:`NotFoundError`,
:class:`ConflictError` and :class:`ValidationError` (any other :class:`DcronError`) are answers.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .errors import DcronError, UnavailableError

#: Fire time to process spawned: from a millisecond to a minute.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: The I/O methods of :class:`~libdcron.abc.DocumentStore` that :func:`count_errors` wraps.
DOCUMENT_STORE_METHODS = (
    "open",
    "close",
    "create",
    "get",
    "update",
    "delete",
    "find",
    "create_many",
    "update_many",
    "changes",
)
#: The I/O methods of :class:`~libdcron.abc.ObjectStore` that :func:`count_errors` wraps.
OBJECT_STORE_METHODS = (
    "put_file",
    "move_file",
    "put_bytes",
    "get_file",
    "read_range",
    "stat",
    "delete",
    "exists",
)

_WORD = re.compile(r"[a-z_]+")


#: The reasons a decline is counted under; any other is ``other``, none at all ``unknown``.
DECLINE_REASONS = frozenset({"busy", "stopping", "unreachable", "refused"})


def decline_reason(reason: str | None) -> str:
    """A worker's decline reason as a label: its first word (``"refused: ..."`` is ``refused``),
    one of :data:`DECLINE_REASONS` (a label's values stay few, whatever a worker answers)."""
    match = _WORD.match((reason or "").strip().lower())
    if match is None:
        return "unknown"
    return match.group() if match.group() in DECLINE_REASONS else "other"


def _guarded(read: Callable[[], float]) -> Callable[[], float]:
    """``read``, answering 0 instead of raising: a scrape never fails for one gauge."""

    def value() -> float:
        try:
            return float(read())
        except Exception:
            return 0.0

    return value


class Metrics:
    """One node's metrics, in :attr:`registry`.

    The gauges read their values when scraped (``set_function``); whoever owns the objects they
    read (the node) sets them with :meth:`watch`.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.run_start_lag = Histogram(
            "dcron_run_start_lag_seconds",
            "Seconds from a run's fire time to its process being spawned on this worker.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.runs = Counter(
            "dcron_runs",
            "Attempts whose end this node's worker recorded, by job and status.",
            ["job", "status"],
            registry=r,
        )
        self.dispatch_declines = Counter(
            "dcron_dispatch_declines",
            "Runs a worker declined when this node's leader dispatched them, by reason.",
            ["reason"],
            registry=r,
        )
        self.retries = Counter(
            "dcron_retries", "Attempts after the first (retries) this node's leader started.", registry=r
        )
        self.lost_runs = Counter("dcron_lost_runs", "Runs this node recorded lost.", registry=r)
        self.skipped_fire_times = Counter(
            "dcron_skipped_fire_times",
            "Fire times this node's leader never ran: a newer one of the same job came due while "
            "they waited behind a run still in progress (no overlap runs only the newest).",
            registry=r,
        )
        self.outbox_depth = Gauge(
            "dcron_outbox_depth", "Execution writes and log uploads not stored yet.", registry=r
        )
        self.leader_changes = Counter(
            "dcron_leader_changes",
            "Times this node became (elected) or stopped being (deposed) the leader.",
            ["change"],
            registry=r,
        )
        self.is_leader = Gauge("dcron_is_leader", "1 while this node's leader is active, else 0.", registry=r)
        self.store_errors = Counter(
            "dcron_store_errors",
            "Document store calls that failed (unavailable or unexpected errors), by method.",
            ["operation"],
            registry=r,
        )
        self.object_store_errors = Counter(
            "dcron_object_store_errors",
            "Object store calls that failed (unavailable or unexpected errors), by method.",
            ["operation"],
            registry=r,
        )
        self.jobs_loaded = Gauge(
            "dcron_jobs_loaded", "Jobs in the schedule of this node's active leader.", registry=r
        )
        self.runs_in_progress = Gauge("dcron_runs_in_progress", "Runs this node's worker holds.", registry=r)
        self._run_children: dict[tuple[str, str], Counter] = {}
        self._decline_children: dict[str, Counter] = {}
        self._lock = threading.Lock()

    def watch(
        self,
        *,
        outbox_depth: Callable[[], float] | None = None,
        is_leader: Callable[[], float] | None = None,
        jobs_loaded: Callable[[], float] | None = None,
        runs_in_progress: Callable[[], float] | None = None,
    ) -> None:
        """Have gauges read their value from these functions at each scrape (0 if one raises)."""
        pairs = (
            (self.outbox_depth, outbox_depth),
            (self.is_leader, is_leader),
            (self.jobs_loaded, jobs_loaded),
            (self.runs_in_progress, runs_in_progress),
        )
        for gauge, read in pairs:
            if read is not None:
                gauge.set_function(_guarded(read))

    def run_ended(self, job: str, status: str) -> None:
        """Count an attempt's end (its labelled child is made once)."""
        child = self._run_children.get((job, status))
        if child is None:
            with self._lock:
                child = self._run_children.setdefault((job, status), self.runs.labels(job=job, status=status))
        child.inc()

    def declined(self, reason: str | None) -> None:
        """Count a run a worker declined, by the first word of its reason."""
        label = decline_reason(reason)
        child = self._decline_children.get(label)
        if child is None:
            with self._lock:
                child = self._decline_children.setdefault(label, self.dispatch_declines.labels(reason=label))
        child.inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text of :attr:`registry` and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def count_errors(target: Any, methods: Iterable[str], counter: Counter) -> None:
    """Wrap ``target``'s ``methods`` (on the instance) so that failed calls count in ``counter``.

    ``counter`` has one label, ``operation`` (the method's name).  A call counts when it raises
    :class:`UnavailableError` or an exception that is no :class:`DcronError`; other dcron errors
    (not found, conflict, invalid) are normal answers.  Only the outermost wrapped call of a
    thread counts (``exists`` calling ``stat`` counts once), and wrapping a method twice is a no-op.
    """
    depth = threading.local()
    for name in methods:
        method = getattr(target, name, None)
        if method is None or getattr(method, "_dcron_counted", False):
            continue
        setattr(target, name, _counting(method, counter.labels(operation=name), depth))


def _counting(method: Callable[..., Any], child: Counter, depth: threading.local) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        level = getattr(depth, "level", 0)
        depth.level = level + 1
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            if level == 0 and (isinstance(exc, UnavailableError) or not isinstance(exc, DcronError)):
                child.inc()
            raise
        finally:
            depth.level = level

    call._dcron_counted = True  # type: ignore[attr-defined]
    return call
