"""Reading Swift objects, and Swift objects opened as files.

``cat_file(path, start, end)`` returns exactly the bytes ``[start, end)`` (one ranged GET),
``get_file`` streams an object to a local file in :data:`CHUNK` pieces, and ``open`` gives a
:class:`SwiftFile`: ranged GETs for reading, a spooled temporary file uploaded on close for writing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import TYPE_CHECKING, Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.spec import AbstractBufferedFile
from swiftclient.exceptions import ClientException

from .base import MiB, SwiftFileSystemBase, os_error

if TYPE_CHECKING:
    from .fs import SwiftFileSystem

__all__ = ["CHUNK", "SwiftFile", "SwiftReads"]

#: The size of the pieces a download streams in.
CHUNK = MiB


class SwiftReads(SwiftFileSystemBase):
    """Reading: ``cat_file`` (ranged), ``get_file`` (streamed) and ``open`` (a :class:`SwiftFile`)."""

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
            raise os_error(exc, f"reading {path}") from exc
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
            raise os_error(exc, f"reading {rpath}") from exc
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
