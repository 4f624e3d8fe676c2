"""Listing, metadata and containers of the Swift filesystem: ``ls``, ``info``, ``find``, ``mkdir``...

Containers are the top-level "directories"; below them, directories are ``/``-separated prefixes
of object names, which exist while some object has them.
"""

from __future__ import annotations

import contextlib
import errno
from datetime import UTC, datetime
from typing import Any

from swiftclient.exceptions import ClientException

from .base import SwiftFileSystemBase

__all__ = ["SwiftListing"]


class SwiftListing(SwiftFileSystemBase):
    """Listing and metadata (``ls``, ``info``, ``find``, ``modified``, ``ukey``) and containers
    (``mkdir``, ``makedirs``, ``rmdir``)."""

    # -- listing and metadata ------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        container, obj = self._split(path)
        entries: list[dict[str, Any]] = []
        if not container:
            _, containers = self._call("listing containers", lambda: self.conn.get_account(full_listing=True))
            for c in containers:
                entries.append({"name": c["name"], "type": "directory", "size": 0, "count": c.get("count")})
        else:
            prefix = f"{obj}/" if obj else ""
            _, items = self._call(
                f"listing {path}",
                lambda: self.conn.get_container(container, prefix=prefix, delimiter="/", full_listing=True),
            )
            for item in items:
                if "subdir" in item:
                    name = f"{container}/{item['subdir'].rstrip('/')}"
                    entries.append({"name": name, "type": "directory", "size": 0})
                else:
                    entries.append(
                        {
                            "name": f"{container}/{item['name']}",
                            "type": "file",
                            "size": int(item.get("bytes") or 0),
                            "ETag": str(item.get("hash", "")).strip('"'),
                            "last_modified": item.get("last_modified"),
                            "content_type": item.get("content_type"),
                        }
                    )
            if not entries and obj:
                info = self.info(path)  # FileNotFoundError when nothing is there
                entries = [info] if info["type"] == "file" else []
        if detail:
            return entries
        return sorted(e["name"] for e in entries)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        container, obj = self._split(path)
        if not container:
            return {"name": "", "type": "directory", "size": 0}
        if not obj:
            headers = self._call(
                f"looking up container {container}", lambda: self.conn.head_container(container)
            )
            return {
                "name": container,
                "type": "directory",
                "size": 0,
                "count": int(headers.get("x-container-object-count") or 0),
                "bytes": int(headers.get("x-container-bytes-used") or 0),
            }
        try:
            headers = self._call(f"looking up {path}", lambda: self.conn.head_object(container, obj))
        except FileNotFoundError:
            # Not an object: maybe a "directory", i.e. a prefix of some objects.
            _, items = self._call(
                f"listing {path}",
                lambda: self.conn.get_container(container, prefix=f"{obj}/", limit=1),
            )
            if items:
                return {"name": f"{container}/{obj}", "type": "directory", "size": 0}
            raise
        return self._file_info(container, obj, headers)

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        container, obj = self._split(path)
        if maxdepth is not None or withdirs or not container:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        found: dict[str, dict[str, Any]] = {}
        if obj:
            with contextlib.suppress(FileNotFoundError):
                info = self.info(path)
                if info["type"] == "file":
                    found[info["name"]] = info
        prefix = f"{obj}/" if obj else ""
        try:
            _, items = self._call(
                f"listing {path}",
                lambda: self.conn.get_container(container, prefix=prefix, full_listing=True),
            )
        except FileNotFoundError:
            items = []
        for item in items:
            name = f"{container}/{item['name']}"
            found[name] = {
                "name": name,
                "type": "file",
                "size": int(item.get("bytes") or 0),
                "ETag": str(item.get("hash", "")).strip('"'),
                "last_modified": item.get("last_modified"),
            }
        names = sorted(found)
        return {n: found[n] for n in names} if detail else names

    def modified(self, path: str) -> datetime:
        mtime = self.info(path).get("mtime")
        if mtime is None:
            raise NotImplementedError(f"Swift gives no modification time for {path}")
        return datetime.fromtimestamp(mtime, tz=UTC)

    def ukey(self, path: str) -> str:
        return str(self.info(path).get("ETag") or super().ukey(path))

    # -- containers ----------------------------------------------------------------------------

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        container, _ = self._split(path)
        if not container:
            raise ValueError("cannot create the account root")
        self._call(f"creating container {container}", lambda: self.conn.put_container(container))

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        if not exist_ok and self.exists(path):
            raise FileExistsError(errno.EEXIST, f"Swift: {path} exists", path)
        self.mkdir(path)

    def rmdir(self, path: str) -> None:
        container, obj = self._split(path)
        if obj:
            return  # pseudo-directories vanish with their last object
        try:
            self._call(f"deleting container {container}", lambda: self.conn.delete_container(container))
        except OSError as exc:
            if isinstance(exc.__cause__, ClientException) and exc.__cause__.http_status == 409:
                raise OSError(errno.ENOTEMPTY, f"Swift: container {container} is not empty") from exc
            raise
