"""Helpers for tests: dcron's own, and those of code that embeds libdcron.

As ``procrastinate.testing`` does for procrastinate, this module ships with the library so that an
application's test suite can exercise its dcron integration without services or subprocesses:

- :func:`wait_for` polls a predicate until it returns something truthy, or fails the test;
- :class:`InMemoryDocumentStore` is a :class:`~libdcron.abc.DocumentStore` held in memory, with the
  real stores' semantics (ids, revisions, conflicts, ``find``, the change feed); dcron's document
  store contract tests run against it as against SQLite and CouchDB;
- :class:`FakeElection` is an :class:`~libdcron.abc.Election` the test drives by hand
  (:meth:`~FakeElection.set_leader`, :meth:`~FakeElection.suspend`);
- :func:`embedded_node` starts a real embedded :class:`~libdcron.node.Node` on a free loopback
  port and waits until it leads; :func:`client_for` gives a :class:`~libdcron.client.Client`
  holding that node's keys.

Each lives in a module of this package named after it: :mod:`~libdcron.testing.waiting`,
:mod:`~libdcron.testing.memory_store`, :mod:`~libdcron.testing.fake_election` and
:mod:`~libdcron.testing.nodes`; import them from ``libdcron.testing``.

Example (pytest)::

    from libdcron.testing import client_for, embedded_node, wait_for

    def test_report_runs(tmp_path):
        script = tmp_path / "report.sh"
        script.write_text("echo done\\n")
        with embedded_node(tmp_path) as node, client_for(node) as client:
            client.schedule("report", "*/1 * * * * *", "sh", script)
            runs = wait_for(lambda: client.executions("report"), timeout=10)
            assert runs[0]["job"] == "report"

The in-memory store is also a plugin for ``memory://NAME`` URLs::

    import libdcron.testing
    from libdcron.plugins import Plugins

    plugins = Plugins(extra=[libdcron.testing])
    with embedded_node(tmp_path, store="memory://app", plugins=plugins) as node:
        ...
"""

from __future__ import annotations

from .fake_election import FakeElection
from .memory_store import MEMORY_SCHEME, InMemoryDocumentStore, dcron_document_store
from .nodes import client_for, embedded_node
from .waiting import wait_for

__all__ = [
    "MEMORY_SCHEME",
    "FakeElection",
    "InMemoryDocumentStore",
    "client_for",
    "dcron_document_store",
    "embedded_node",
    "wait_for",
]
