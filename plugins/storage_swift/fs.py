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
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem
from swiftclient.exceptions import ClientException

from .keystone import SwiftConnection

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SEGMENT_SIZE", "SwiftFileSystem", "connection_options"]

MiB = 2**20
DEFAULT_SEGMENT_SIZE = 64 * MiB
#: Swift's default ``max_manifest_segments``; larger files get larger segments.
MAX_SEGMENTS = 1000
CHUNK = MiB
T = TypeVar("T")


def connection_options(
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
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for swiftclient's ``Connection``: the arguments given, else the environment.

    v1 reads ``ST_AUTH``, ``ST_USER``, ``ST_KEY``; Keystone reads ``OS_AUTH_URL``, ``OS_USERNAME``,
    ``OS_PASSWORD``, ``OS_PROJECT_NAME`` (or ``OS_TENANT_NAME``), ``OS_PROJECT_ID``,
    ``OS_USER_DOMAIN_NAME``, ``OS_PROJECT_DOMAIN_NAME``, ``OS_REGION_NAME`` and
    ``OS_IDENTITY_API_VERSION``; a ready token is ``OS_STORAGE_URL`` + ``OS_AUTH_TOKEN``.
    ``ST_AUTH`` wins over ``OS_AUTH_URL`` when both are set.  The auth version defaults to 1 for
    ``ST_AUTH`` and URLs ending in ``/v1.0``, else to 3.  Raises ``ValueError`` when there is
    neither an auth URL nor a token.
    """
    env = os.environ if environ is None else environ
    from_st = not auth_url and bool(env.get("ST_AUTH"))
    auth_url = auth_url or env.get("ST_AUTH") or env.get("OS_AUTH_URL")
    if not auth_version:
        if from_st or (auth_url and auth_url.rstrip("/").endswith(("/v1.0", "/v1"))):
            auth_version = "1"
        else:
            auth_version = env.get("OS_IDENTITY_API_VERSION") or "3"
    v1 = auth_version in ("1", "1.0")
    if v1:
        user = user or env.get("ST_USER")
        key = key or env.get("ST_KEY")
    else:
        user = user or env.get("OS_USERNAME")
        key = key or env.get("OS_PASSWORD")
    storage_url = storage_url or env.get("OS_STORAGE_URL")
    auth_token = auth_token or env.get("OS_AUTH_TOKEN")
    if not auth_url and not (storage_url and auth_token):
        raise ValueError(
            "no Swift credentials: set ST_AUTH, ST_USER and ST_KEY (auth v1), or OS_AUTH_URL, "
            "OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME (Keystone v3), or the matching "
            "swift_* options"
        )
    os_options: dict[str, Any] = {}
    if not v1:
        os_options = {
            "project_name": project_name or env.get("OS_PROJECT_NAME") or env.get("OS_TENANT_NAME"),
            "project_id": project_id or env.get("OS_PROJECT_ID"),
            "user_domain_name": user_domain_name or env.get("OS_USER_DOMAIN_NAME"),
            "project_domain_name": project_domain_name or env.get("OS_PROJECT_DOMAIN_NAME"),
            "region_name": region_name or env.get("OS_REGION_NAME"),
        }
        os_options = {k: v for k, v in os_options.items() if v}
    options: dict[str, Any] = {
        "authurl": auth_url,
        "user": user,
        "key": key,
        "auth_version": auth_version,
        "os_options": os_options,
    }
    if storage_url and auth_token:
        options["preauthurl"] = storage_url
        options["preauthtoken"] = auth_token
    return options


def _os_error(exc: ClientException, what: str) -> OSError:
    status = exc.http_status
    message = f"Swift: {what}: {exc}"
    if status == 404:
        return FileNotFoundError(errno.ENOENT, message)
    if status in (401, 403):
        return PermissionError(errno.EACCES, message)
    if status is None or status >= 500:
        return ConnectionError(errno.EIO, message)
    return OSError(errno.EIO, message)


def _mtime(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


class SwiftFileSystem(AbstractFileSystem):  # type: ignore[misc]
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

    # -- plumbing ------------------------------------------------------------------------------

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
            raise _os_error(exc, what) from exc

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
            "mtime": _mtime(headers.get("last-modified")),
            "content_type": headers.get("content-type"),
            "timestamp": headers.get("x-timestamp"),
            "static_large_object": str(headers.get("x-static-large-object", "")).lower() == "true",
        }

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

    # -- reading -------------------------------------------------------------------------------

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        container, obj = self._split(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = int(self.info(path)["size"])
            start = max(0, size + start) if start is not None and start < 0 else start
            end = max(0, size + end) if end is not None and end < 0 else end
        begin = start or 0
        headers: dict[str, str] = {}
        if end is not None:
            if end <= begin:
                self._call(f"looking up {path}", lambda: self.conn.head_object(container, obj))
                return b""
            headers["Range"] = f"bytes={begin}-{end - 1}"  # HTTP ranges include their last byte
        elif begin > 0:
            headers["Range"] = f"bytes={begin}-"
        try:
            _, body = self.conn.get_object(container, obj, headers=headers)
        except ClientException as exc:
            if exc.http_status == 416:  # the range starts at or past the end
                return b""
            raise _os_error(exc, f"reading {path}") from exc
        return bytes(body)

    def get_file(
        self,
        rpath: str,
        lpath: str,
        callback: Callback = DEFAULT_CALLBACK,
        outfile: Any = None,
        **kwargs: Any,
    ) -> None:
        container, obj = self._split(rpath)
        if os.path.isdir(lpath):
            return
        headers, body = self._call(
            f"reading {rpath}", lambda: self.conn.get_object(container, obj, resp_chunk_size=CHUNK)
        )
        callback.set_size(int(headers.get("content-length") or 0))
        try:
            with contextlib.ExitStack() as stack:
                out = outfile if outfile is not None else stack.enter_context(open(lpath, "wb"))
                for chunk in body:
                    out.write(chunk)
                    callback.relative_update(len(chunk))
        except ClientException as exc:
            raise _os_error(exc, f"reading {rpath}") from exc
        finally:
            with contextlib.suppress(Exception):
                body.close()

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SwiftFile:
        return SwiftFile(
            self,
            path,
            mode=mode,
            block_size=block_size if block_size is not None else "default",
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )

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
                    lambda: self.conn.put_object(container, obj, contents=_at(f, 0), content_length=size),
                )
                callback.relative_update(size)
            else:
                self._put_segmented(container, obj, f, size, segment, callback)
        self._delete_segments(old)

    def _put_segmented(
        self, container: str, obj: str, f: Any, size: int, segment: int, callback: Callback
    ) -> None:
        segment = max(segment, -(-size // MAX_SEGMENTS))
        seg_container = container + self.segment_container_suffix
        prefix = f"{obj}/slo/{time.time():.6f}-{uuid.uuid4().hex[:8]}/"
        manifest: list[dict[str, Any]] = []
        try:
            for index, offset in enumerate(range(0, size, segment)):
                length = min(segment, size - offset)
                name = f"{prefix}{index:08d}"

                def put_segment(name: str = name, offset: int = offset, length: int = length) -> str:
                    etag: str = self.conn.put_object(
                        seg_container, name, contents=_at(f, offset), content_length=length
                    )
                    return etag

                etag = self._in_container(
                    seg_container, f"writing segment {index} of {container}/{obj}", put_segment
                )
                manifest.append({"path": f"/{seg_container}/{name}", "etag": etag, "size_bytes": length})
                callback.relative_update(length)
            body = json.dumps(manifest)
            self._in_container(
                container,
                f"writing the manifest of {container}/{obj}",
                lambda: self.conn.put_object(
                    container, obj, contents=body, query_string="multipart-manifest=put"
                ),
            )
        except BaseException:
            self._delete_segments([m["path"] for m in manifest])
            raise

    def _old_segments(self, container: str, obj: str) -> list[str]:
        """The segment paths (``/container/name``) of the large object at ``container/obj``."""
        try:
            headers = self._call(
                f"looking up {container}/{obj}", lambda: self.conn.head_object(container, obj)
            )
        except FileNotFoundError:
            return []
        if str(headers.get("x-static-large-object", "")).lower() != "true":
            return []
        _, body = self._call(
            f"reading the manifest of {container}/{obj}",
            lambda: self.conn.get_object(container, obj, query_string="multipart-manifest=get"),
        )
        return [str(seg["name"]) for seg in json.loads(body)]

    def _delete_segments(self, paths: list[str]) -> None:
        for path in paths:
            seg_container, _, name = path.lstrip("/").partition("/")
            try:
                self.conn.delete_object(seg_container, name)
            except Exception as exc:  # leftovers cost space, not correctness
                log.warning("could not delete Swift segment %s: %s", path, exc)

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


def _at(f: Any, offset: int) -> Any:
    """``f`` positioned at ``offset`` (swiftclient rewinds to that position when it retries)."""
    f.seek(offset)
    return f


class SwiftFile(AbstractBufferedFile):  # type: ignore[misc]
    """A Swift object opened for reading (ranged GETs) or writing (spooled to a temporary file,
    uploaded with :meth:`SwiftFileSystem.put_file` on close, so large files are segmented)."""

    fs: SwiftFileSystem

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start=start, end=end)

    def _initiate_upload(self) -> None:
        self._spool = tempfile.NamedTemporaryFile(prefix="dcron-swift-", delete=False)  # noqa: SIM115

    def _upload_chunk(self, final: bool = False) -> bool:
        self._spool.write(self.buffer.getvalue())
        if final:
            self._spool.close()
            try:
                self.fs.put_file(self._spool.name, self.path)
            finally:
                os.unlink(self._spool.name)
        return True

    def discard(self) -> None:
        spool = getattr(self, "_spool", None)
        if spool is not None:
            spool.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool.name)
