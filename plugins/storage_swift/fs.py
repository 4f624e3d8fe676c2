"""An fsspec filesystem (protocol ``swift``) over python-swiftclient.

Paths are ``container/object/name`` (``swift://container/object/name`` is accepted too): the first
segment is the container, the rest the object name; "directories" are ``/``-separated prefixes.

* Authentication: v1 (``ST_AUTH``/``ST_USER``/``ST_KEY``, e.g. tempauth) or Keystone v3
  (``OS_AUTH_URL``/``OS_USERNAME``/``OS_PASSWORD``/``OS_PROJECT_NAME``/``OS_USER_DOMAIN_NAME``/
  ``OS_PROJECT_DOMAIN_NAME``, ``OS_REGION_NAME``), or a token (``OS_STORAGE_URL`` +
  ``OS_AUTH_TOKEN``); constructor arguments override the environment.  See
  :func:`connection_options`.
* Writes create the container when it is missing.
* Files larger than ``segment_size`` (default 64 MiB) are uploaded as Static Large Objects:
  segments in ``<container>_segments`` under ``<object>/slo/<upload id>/``, then a manifest.  Each
  segment streams from the file; nothing is held in memory.  Overwriting or deleting a large
  object deletes its old segments.
* Downloads stream in 1 MiB chunks; ``cat_file(path, start, end)`` returns exactly the bytes
  ``[start, end)`` (``Range: bytes=start-(end-1)``), nothing past the end of the object.
* Errors: a missing container or object raises ``FileNotFoundError``, a refused authentication
  ``PermissionError``, anything else the server answers ``OSError``; connection failures raise
  requests' exceptions (``OSError`` too) after ``retries`` retries.

A connection is made per thread (swiftclient's ``Connection`` is not thread-safe).

The filesystem is put together from parts, one module each: :mod:`.base` (connection, paths,
errors), :mod:`.credentials` (:func:`connection_options`), :mod:`.listing` (listing, metadata,
containers), :mod:`.files` (reads and file objects) and :mod:`.segments` (Static Large Objects);
writing and deleting are here.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .base import MiB
from .credentials import connection_options
from .files import CHUNK, SwiftFile, SwiftReads
from .listing import SwiftListing
from .segments import MAX_SEGMENTS, SegmentedUploads, at_offset

__all__ = [
    "CHUNK",
    "DEFAULT_SEGMENT_SIZE",
    "MAX_SEGMENTS",
    "SwiftFile",
    "SwiftFileSystem",
    "connection_options",
]

DEFAULT_SEGMENT_SIZE = 64 * MiB


class SwiftFileSystem(SwiftListing, SwiftReads, SegmentedUploads):
    """Swift containers and objects as an fsspec filesystem (see the module documentation).

    ``segment_size``: files larger than this are uploaded in segments (SLO).  ``retries``: how
    often swiftclient retries a failed request (with backoff from 1 s, doubling).  ``timeout``:
    seconds for connecting and for each read of a response.
    """

    protocol = ("swift",)
    root_marker = ""

    def __init__(
        self,
        auth_url: str | None = None,
        user: str | None = None,
        key: str | None = None,
        auth_version: str | None = None,
        project_name: str | None = None,
        project_id: str | None = None,
        user_domain_name: str | None = None,
        project_domain_name: str | None = None,
        region_name: str | None = None,
        storage_url: str | None = None,
        auth_token: str | None = None,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        segment_container_suffix: str = "_segments",
        retries: int = 3,
        timeout: float = 30.0,
        insecure: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(segment_size) < 1:
            raise ValueError(f"segment_size must be positive, not {segment_size!r}")
        self.segment_size = int(segment_size)
        self.segment_container_suffix = segment_container_suffix
        self._conn_options = connection_options(
            auth_url=auth_url,
            user=user,
            key=key,
            auth_version=auth_version,
            project_name=project_name,
            project_id=project_id,
            user_domain_name=user_domain_name,
            project_domain_name=project_domain_name,
            region_name=region_name,
            storage_url=storage_url,
            auth_token=auth_token,
        )
        self._conn_options.update(retries=int(retries), timeout=float(timeout), insecure=bool(insecure))
        self._local = threading.local()

    # -- writing -------------------------------------------------------------------------------

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        container, obj = self._split(path)
        if not obj:
            raise ValueError(f"{path!r} names a container, not an object")
        data = bytes(value)
        old = self._old_segments(container, obj)
        self._in_container(
            container,
            f"writing {path}",
            lambda: self.conn.put_object(container, obj, contents=data, content_length=len(data)),
        )
        self._delete_segments(old)

    def put_file(
        self,
        lpath: str,
        rpath: str,
        callback: Callback = DEFAULT_CALLBACK,
        mode: str = "overwrite",
        segment_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Upload ``lpath``, as a Static Large Object when it is larger than ``segment_size``."""
        if os.path.isdir(lpath):
            return
        container, obj = self._split(rpath)
        if not obj:
            raise ValueError(f"{rpath!r} names a container, not an object")
        size = os.path.getsize(lpath)
        callback.set_size(size)
        segment = int(segment_size or self.segment_size)
        old = self._old_segments(container, obj)
        with open(lpath, "rb") as f:
            if size <= segment:
                self._in_container(
                    container,
                    f"writing {rpath}",
                    lambda: self.conn.put_object(
                        container, obj, contents=at_offset(f, 0), content_length=size
                    ),
                )
                callback.relative_update(size)
            else:
                self._put_segmented(container, obj, f, size, segment, callback)
        self._delete_segments(old)

    # -- deleting ------------------------------------------------------------------------------

    def rm_file(self, path: str) -> None:
        container, obj = self._split(path)
        if not obj:
            raise IsADirectoryError(errno.EISDIR, f"Swift: {path} is a container; use rmdir", path)
        old = self._old_segments(container, obj)
        self._call(f"deleting {path}", lambda: self.conn.delete_object(container, obj))
        self._delete_segments(old)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        for p in path if isinstance(path, list | tuple) else [path]:
            container, obj = self._split(p)
            if not recursive:
                self.rm_file(p)
                continue
            for name in self.find(p, maxdepth=maxdepth):
                self.rm_file(name)
            if not obj:
                self.rmdir(container)
