"""A dcron node: one worker, the public API, and the leader loop while elected.

Embed one in your own service::

    from libdcron.config import NodeSettings
    from libdcron.node import Node

    node = Node(NodeSettings(data_dir="/tmp/dcron", listen="tcp://127.0.0.1:7571"))
    node.start()
    ...
    node.stop()
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from .abc import Member, ObjectStore
from .api import Api
from .backoff import Backoff, retry
from .config import NodeSettings
from .errors import DcronError, UnavailableError, ValidationError
from .leader import Leader
from .metrics import DOCUMENT_STORE_METHODS, OBJECT_STORE_METHODS, Metrics, count_errors
from .model import Execution
from .notifier import FinishedNotifier
from .object_base import check_object_url, within
from .plugins import Plugins
from .recorder import Recorder
from .redact import redact_url
from .retention import Policy, Retention, RetentionRunner
from .transport.keys import node_security
from .transport.messages import FinishedBatch
from .transport.zmq import ZmqTransport
from .web import WebServer, load_token
from .worker import Worker

log = logging.getLogger(__name__)


class Node:
    def __init__(self, settings: NodeSettings, plugins: Plugins | None = None) -> None:
        self.settings = settings.resolved()
        s = self.settings
        assert s.node_id and s.store and s.objects and s.election and s.advertise
        self.node_id: str = s.node_id
        self.plugins = plugins or Plugins()
        options = s.plugin_options()
        self.store = self.plugins.document_store(s.store, options)
        self.objects = self.plugins.object_store(s.objects, options)
        self.election = self.plugins.election(s.election, options)
        #: This node's Prometheus metrics (a registry of its own: see libdcron.metrics).
        self.metrics = Metrics()
        count_errors(self.store, DOCUMENT_STORE_METHODS, self.metrics.store_errors)
        count_errors(self.objects, OBJECT_STORE_METHODS, self.metrics.object_store_errors)
        self._object_stores: dict[str, ObjectStore] = {}
        self.node_dir = s.data_dir / "nodes" / self.node_id
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.recorder: Recorder | None = None
        security, self._created_keys = node_security(
            s.keys_dir or s.data_dir / "keys", s.cluster_key, s.node_keys, s.client_keys
        )
        self.transport = ZmqTransport(security=security)
        self.leader: Leader | None = None
        #: The retention sweeper, running while this node leads (libdcron.retention).
        self.retention: RetentionRunner | None = None
        self._leader_lock = threading.Lock()
        self.endpoint = ""
        self._worker: Worker | None = None
        self._notifier: FinishedNotifier | None = None
        self._stopped = threading.Event()
        #: The web dashboard (libdcron.web), while the ``http`` setting turns it on.
        self.web: WebServer | None = None
        #: Tells this process from an earlier one with the same node id: runs recorded by an
        #: earlier incarnation died with it, and the leader marks them lost.
        self.incarnation = uuid.uuid4().hex[:12]
        self.metrics.watch(
            outbox_depth=lambda: self.recorder.pending() if self.recorder is not None else 0,
            is_leader=lambda: 1 if self._active_leader() is not None else 0,
            jobs_loaded=lambda: len(leader.jobs) if (leader := self._active_leader()) is not None else 0,
            runs_in_progress=lambda: self._worker.in_progress() if self._worker is not None else 0,
        )

    @property
    def worker(self) -> Worker:
        """This node's worker (made by :meth:`start`)."""
        if self._worker is None:
            raise UnavailableError(f"node {self.node_id} is not started")
        return self._worker

    def resolve_objects(self, url: str) -> ObjectStore:
        """The object store of ``url``: the configured one, or one of ``allowed_objects``.

        A URL outside them, or one with ``.``/``..`` segments, is refused with
        :class:`ValidationError`: a job can read nothing else of the host or of the cloud account.
        Stores for ``allowed_objects`` are made once each, so their number is bounded.
        """
        check_object_url(url)
        if within(url, self.objects.base_url):
            return self.objects
        for prefix in self.settings.allowed_objects:
            if within(url, prefix):
                store = self._object_stores.get(prefix)
                if store is None:
                    store = self.plugins.object_store(prefix, self.settings.plugin_options())
                    count_errors(store, OBJECT_STORE_METHODS, self.metrics.object_store_errors)
                    self._object_stores[prefix] = store
                return store
        allowed = [self.objects.base_url, *self.settings.allowed_objects]
        raise ValidationError(
            f"{redact_url(url)} is outside the object stores this node may read "
            f"({', '.join(redact_url(a) for a in allowed)}); an operator can add one with the "
            "allowed_objects setting"
        )

    def start(self, wait_for_store: float | None = None) -> None:
        """Open the store (retrying while it is unavailable), serve, join the election."""
        s = self.settings
        self._open_store(wait_for_store)
        self.recorder = Recorder(self.store, self.resolve_objects, self.node_dir / "outbox")
        from .proctree import ProcessTree, node_key

        containment = ProcessTree(node_key(s.data_dir, self.node_id), self.incarnation)
        if killed := containment.sweep_leftovers():
            log.warning(
                "killed %d leftover process(es) of an earlier incarnation of node %s", killed, self.node_id
            )
        self._notifier = FinishedNotifier(self._send_finished)
        self._worker = Worker(
            self.node_id,
            self.recorder,
            self.objects,
            self.resolve_objects,
            self.plugins.interpreters,
            self.node_dir,
            capacity=s.capacity,
            log_cap=s.log_cap,
            notify=self._notify_leader,
            incarnation=self.incarnation,
            containment=containment,
            metrics=self.metrics,
        )
        self.api = Api(self)
        if s.http:
            self._serve_http()  # before the election: a node that cannot serve it never leads
        self.endpoint = self.transport.serve(s.listen, self.api.handle)
        advertise = s.advertise or self.endpoint
        if advertise.endswith(":0"):
            advertise = self.endpoint
        self.member = Member(self.node_id, advertise, s.capacity, {"incarnation": self.incarnation})
        self._retrying(
            "election", lambda: self.election.start(self.member, self._on_elected, self._on_deposed)
        )
        log.info(
            "node %s listening on %s (advertised %s); data in %s; store %s; objects %s; election %s",
            self.node_id,
            self.endpoint,
            advertise,
            s.data_dir,
            redact_url(s.store or ""),
            redact_url(s.objects or ""),
            redact_url(s.election or ""),
        )
        if self._created_keys:
            log.warning(
                "created CurveZMQ keys in %s: dcron on this host finds them there; for a cluster, "
                "copy cluster.key_secret to every node (see README, Security)",
                s.keys_dir,
            )

    def _serve_http(self) -> None:
        s = self.settings
        assert s.http and s.keys_dir
        token, path, created = load_token(s.keys_dir, s.http_token)
        web = WebServer(self, s.http, token, write=s.http_write)
        try:
            web.start()
        except UnavailableError as exc:
            if not s.http_optional:
                raise
            log.warning("%s; running without the dashboard (set --http to choose its address)", exc)
            return
        self.web = web
        where = f"the token in {path}" if path else "the configured http_token"
        log.info(
            "dashboard and /metrics on %s (%s); sign in with %s%s",
            web.url,
            "write actions on" if s.http_write else "read-only",
            where,
            " (created now)" if created else "",
        )

    def _open_store(self, wait: float | None) -> None:
        self._retrying("document store", self.store.open, wait)

    def _retrying(self, what: str, call: Callable[[], None], wait: float | None = None) -> None:
        """Call until it stops raising UnavailableError (logging each failure), or ``wait`` passes."""
        retry(
            call,
            (UnavailableError,),
            backoff=Backoff(0.5, 10.0),
            deadline=wait,
            stop=self._stopped,
            log=log,
            what=f"{what}",
        )

    # -- the one place that knows whether the leader is this process or another node ----------

    def _active_leader(self) -> Leader | None:
        leader = self.leader
        return leader if leader is not None and leader.active else None

    def local_leader(self) -> Leader:
        """This node's active leader; :class:`UnavailableError` when this node does not lead."""
        leader = self.leader
        if leader is None or not leader.active:
            raise UnavailableError(f"node {self.node_id} is not the leader")
        return leader

    def to_leader(
        self, command: str, body: dict[str, Any], local: Callable[[Leader], dict[str, Any]], timeout: float
    ) -> dict[str, Any]:
        """``local(leader)`` when this node leads, else ``command`` sent to the elected leader."""
        leader = self.leader
        if leader is not None and leader.active:
            return local(leader)
        member = self.election.leader()
        if member is None or member.node_id == self.node_id:
            raise UnavailableError("no leader is elected yet; try again in a few seconds")
        return self.transport.request(member.endpoint, command, body, timeout=timeout, retries=0)

    def _notify_leader(self, ex: Execution) -> None:
        if self._notifier is not None:
            self._notifier.add(ex)

    def _send_finished(self, batch: list[Execution]) -> None:
        def local(leader: Leader) -> dict[str, Any]:
            for ex in batch:
                leader.finished(ex)
            return {}

        self.to_leader("FINISHED", FinishedBatch(batch).to_body(), local, timeout=2.0)

    def _on_elected(self) -> None:
        with self._leader_lock:
            if self.leader is not None:
                return
            s = self.settings
            self.leader = Leader(
                self.node_id,
                self.store,
                self.election,
                self.transport,
                s.lookback,
                s.lead,
                local_worker=self.api.dispatch_local if self.api is not None else None,
                metrics=self.metrics,
            )
            policy = Policy(s.keep_runs, s.keep_days)
            sweeper = Retention(self.store, self.resolve_objects, policy)
            self.retention = RetentionRunner(sweeper, interval=s.retention_interval)
            self.retention.start()
            # Counted before the leader starts: once it is active (``dcron_is_leader`` 1), the
            # election that made it is already counted.
            self.metrics.leader_changes.labels(change="elected").inc()
            self.leader.start()  # last: once it is ready, so is the rest of the leadership
        log.info("node %s is now the leader", self.node_id)

    def _on_deposed(self) -> None:
        with self._leader_lock:
            leader, self.leader = self.leader, None
            retention, self.retention = self.retention, None
        if retention is not None:
            retention.stop(timeout=None)  # on the election's thread: only ask it to stop
        if leader is not None:
            self.metrics.leader_changes.labels(change="deposed").inc()
            # A stop steps down on purpose; any other step-down (a lost session) is worth a warning.
            level = logging.INFO if self._stopped.is_set() else logging.WARNING
            log.log(level, "node %s stepped down; its in-memory schedule is discarded", self.node_id)
            threading.Thread(target=leader.stop, name="dcron-stepdown", daemon=True).start()

    def stop(self, grace: float | None = None) -> None:
        """Step down, finish or hand back running jobs, close everything.

        Runs in progress get ``grace`` seconds (default: the ``stop_grace`` setting) to end; then
        they are killed and recorded ``lost``, and the leader (another node's, or this one's after
        a restart) runs another attempt.
        """
        if grace is None:
            grace = self.settings.stop_grace
        self._stopped.set()
        if self.web is not None:
            self.web.stop()
        leader, retention = self.leader, self.retention
        if retention is not None:
            retention.stop()
        try:
            self.election.stop()
        except DcronError as exc:
            log.warning("election stop: %s", exc)
        if leader is not None:
            leader.stop()
        if self._worker is not None:
            self._worker.stop(grace)
        if self._notifier is not None:
            self._notifier.close()
        self.transport.close()
        if self.recorder is not None:
            self.recorder.close()
        self.store.close()
        log.info("node %s stopped", self.node_id)

    def info(self) -> dict[str, Any]:
        return {"node": self.node_id, "endpoint": self.endpoint}
