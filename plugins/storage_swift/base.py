"""What every part of the Swift filesystem shares: a connection per thread, paths, error mapping.

:class:`SwiftFileSystemBase` is the root of :class:`~dcron_plugins.storage_swift.fs.SwiftFileSystem`;
its other parts (:mod:`.listing`, :mod:`.files`, :mod:`.segments`) build on it.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from fsspec.spec import AbstractFileSystem
from swiftclient.exceptions import ClientException

from .keystone import SwiftConnection

log = logging.getLogger(__name__)

__all__ = ["MiB", "SwiftFileSystemBase", "mtime", "os_error"]

MiB = 2**20
T = TypeVar("T")


def os_error(exc: ClientException, what: str) -> OSError:
    status = exc.http_status
    message = f"Swift: {what}: {exc}"
    if status == 404:
        return FileNotFoundError(errno.ENOENT, message)
    if status in (401, 403):
        return PermissionError(errno.EACCES, message)
    if status is None or status >= 500:
        return ConnectionError(errno.EIO, message)
    return OSError(errno.EIO, message)


def mtime(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


class SwiftFileSystemBase(AbstractFileSystem):  # type: ignore[misc]
    """The plumbing of :class:`~dcron_plugins.storage_swift.fs.SwiftFileSystem`, which sets the
    attributes declared here in its constructor."""

    segment_size: int
    segment_container_suffix: str
    _conn_options: dict[str, Any]
    _local: threading.local

    @property
    def conn(self) -> SwiftConnection:
        """This thread's connection."""
        conn: SwiftConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = SwiftConnection(**self._conn_options)
            self._local.conn = conn
        return conn

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        stripped: str = super()._strip_protocol(path)
        return stripped.strip("/")

    def _split(self, path: str) -> tuple[str, str]:
        container, _, obj = self._strip_protocol(path).partition("/")
        return container, obj

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ClientException as exc:
            raise os_error(exc, what) from exc

    def _in_container(self, container: str, what: str, fn: Callable[[], T]) -> T:
        """Run a write; when the container is missing, create it and run the write again."""
        try:
            return self._call(what, fn)
        except FileNotFoundError:
            self._call(f"creating container {container}", lambda: self.conn.put_container(container))
            log.info("created Swift container %s", container)
            return self._call(what, fn)

    def _file_info(self, container: str, obj: str, headers: Mapping[str, str]) -> dict[str, Any]:
        etag = str(headers.get("etag", "")).strip('"')
        return {
            "name": f"{container}/{obj}",
            "type": "file",
            "size": int(headers.get("content-length") or 0),
            "ETag": etag,
            "last_modified": headers.get("last-modified"),
            "mtime": mtime(headers.get("last-modified")),
            "content_type": headers.get("content-type"),
            "timestamp": headers.get("x-timestamp"),
            "static_large_object": str(headers.get("x-static-large-object", "")).lower() == "true",
        }
