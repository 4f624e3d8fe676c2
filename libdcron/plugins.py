"""Finding plugins: one pluggy manager, filled from the ``libdcron`` entry-point group."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

from . import hookspecs
from .abc import DocumentStore, Election, Interpreter, ObjectStore
from .errors import PluginError

log = logging.getLogger(__name__)


class Plugins:
    """The plugins of one process (or one embedded node): stores, elections, interpreters."""

    def __init__(self, load_entry_points: bool = True, extra: Iterable[object] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        if load_entry_points:
            count = self.pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
            log.debug("loaded %d plugins from entry points", count)
            if not self.pm.get_plugins():
                raise PluginError(
                    "no dcron plugins are registered: install the package (pip install .) so that "
                    "its entry points exist"
                )
        for plugin in extra:
            self.pm.register(plugin)

    def register(self, plugin: object, name: str | None = None) -> None:
        self.pm.register(plugin, name=name)

    def interpreters(self) -> dict[str, Interpreter]:
        found: dict[str, Interpreter] = {}
        # pluggy calls the last registered first: reverse so later registrations win.
        for batch in reversed(self.pm.hook.dcron_interpreters()):
            for interp in batch or ():
                found[interp.name] = interp
        return found

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
