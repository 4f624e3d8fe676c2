"""Finding plugins: one pluggy manager; the built-ins by import, then the ``libdcron`` entry points.

The built-in plugins are registered first, by import, under the same names as their entry points
(as datasette does), so a source checkout runs without installed entry points and pluggy skips
the built-ins' entry points.  External plugins from the entry-point group come after them, so they
are asked first and win (pluggy calls the last registered first).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

from . import hookspecs
from .abc import DocumentStore, Election, Interpreter, ObjectStore
from .errors import PluginError

log = logging.getLogger(__name__)


#: (entry-point name, module) of every built-in plugin, in registration order.
BUILTINS: tuple[tuple[str, str], ...] = (
    ("dcron-store-sqlite", "dcron_plugins.store_sqlite"),
    ("dcron-store-couchdb", "dcron_plugins.store_couchdb"),
    ("dcron-election-file", "dcron_plugins.election_file"),
    ("dcron-election-zookeeper", "dcron_plugins.election_zookeeper"),
    ("dcron-storage-local", "dcron_plugins.storage_local"),
    ("dcron-storage-s3", "dcron_plugins.storage_s3"),
    ("dcron-storage-swift", "dcron_plugins.storage_swift"),
    ("dcron-interpreters", "dcron_plugins.interpreters"),
)


class Plugins:
    """The plugins of one process (or one embedded node): stores, elections, interpreters."""

    def __init__(
        self, load_entry_points: bool = True, extra: Iterable[object] = (), builtins: bool | None = None
    ) -> None:
        """``builtins`` (default: as ``load_entry_points``) registers the built-in plugins first."""
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._interpreters: tuple[frozenset[int], dict[str, Interpreter]] | None = None
        self.pm.add_hookspecs(hookspecs)
        for name, module in BUILTINS if (load_entry_points if builtins is None else builtins) else ():
            try:
                self.pm.register(importlib.import_module(module), name=name)
            except ImportError as exc:
                raise PluginError(f"built-in plugin {name} ({module}) cannot be imported: {exc}") from None
        if load_entry_points:
            count = self.pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
            log.debug("loaded %d external plugins from entry points", count)
        for plugin in extra:
            if not self.pm.is_registered(plugin):
                self.pm.register(plugin)

    def register(self, plugin: object, name: str | None = None) -> None:
        self.pm.register(plugin, name=name)

    def interpreters(self) -> dict[str, Interpreter]:
        """The interpreters by name (a later registration wins).  The hook is called again only
        when the registered plugins change: a worker asks at every run, and the interpreters
        keep what they looked up (a program's path on PATH) between runs."""
        plugins = frozenset(map(id, self.pm.get_plugins()))
        cached = self._interpreters
        if cached is not None and cached[0] == plugins:
            return dict(cached[1])
        found: dict[str, Interpreter] = {}
        # pluggy calls the last registered first: reverse so later registrations win.
        for batch in reversed(self.pm.hook.dcron_interpreters()):
            for interp in batch or ():
                found[interp.name] = interp
        self._interpreters = (plugins, found)
        return dict(found)

    def object_store(self, url: str, options: Mapping[str, Any]) -> ObjectStore:
        store = self.pm.hook.dcron_object_store(url=url, options=options)
        if store is None:
            raise PluginError(f"no object-store plugin handles {url!r} (known: file://, s3://, swift://)")
        return store  # type: ignore[no-any-return]

    def document_store(self, url: str, options: Mapping[str, Any]) -> DocumentStore:
        store = self.pm.hook.dcron_document_store(url=url, options=options)
        if store is None:
            raise PluginError(f"no document-store plugin handles {url!r} (known: sqlite://, http(s)://)")
        return store  # type: ignore[no-any-return]

    def election(self, url: str, options: Mapping[str, Any]) -> Election:
        election = self.pm.hook.dcron_election(url=url, options=options)
        if election is None:
            raise PluginError(f"no election plugin handles {url!r} (known: file://, zk://)")
        return election  # type: ignore[no-any-return]
