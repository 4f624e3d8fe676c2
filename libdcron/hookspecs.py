"""The pluggy hooks a dcron plugin may implement.

A plugin is a module or object with functions decorated by :data:`hookimpl`, registered from the
``libdcron`` entry-point group.  The built-in plugins are registered first, by import, under their
entry-point names (see :data:`libdcron.plugins.BUILTINS`); external plugins come after them and
are therefore asked first.  Each hook says whether it is ``firstresult`` (the first non-``None``
answer wins) or collects every answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy

from .abc import DocumentStore, Election, Interpreter, ObjectStore

PROJECT = "libdcron"
ENTRY_POINT_GROUP = "libdcron"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def dcron_interpreters() -> list[Interpreter]:  # type: ignore[empty-body]
    """Interpreters this plugin provides.

    Every plugin's list is collected; when two provide the same name, the one registered last wins
    (external plugins load after the built-ins, so they can replace ``python``, say).
    """


@hookspec(firstresult=True)
def dcron_object_store(url: str, options: Mapping[str, Any]) -> ObjectStore | None:  # type: ignore[empty-body]
    """An object store for the base URL ``url`` (``file:///...``, ``s3://bucket/prefix``...).

    ``firstresult``: return ``None`` when the URL's scheme is not yours.  ``options`` holds the
    node's settings (``data_dir``, credentials...); read what you need, ignore the rest.
    """


@hookspec(firstresult=True)
def dcron_document_store(url: str, options: Mapping[str, Any]) -> DocumentStore | None:  # type: ignore[empty-body]
    """A document store for ``url`` (``sqlite:///path``, ``http://host:5984/prefix``...).

    ``firstresult``: return ``None`` when the URL is not yours.  The store is not opened yet.
    """


@hookspec(firstresult=True)
def dcron_election(url: str, options: Mapping[str, Any]) -> Election | None:  # type: ignore[empty-body]
    """An election for ``url`` (``file:///dir`` on one host, ``zk://host:port,.../chroot``).

    ``firstresult``: return ``None`` when the URL is not yours.
    """
