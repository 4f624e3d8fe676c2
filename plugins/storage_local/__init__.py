"""The ``file://`` object store: objects are files under a local (or shared) directory.

URL form: ``file:///absolute/path`` (``file://localhost/absolute/path`` is accepted too).
Parent directories are created on write.  Writes are atomic: an object is written to a hidden
temporary file in its directory (``.<name>.tmp-<random>``), flushed to disk and renamed over the
target, so a reader sees the old object or the new one, never half of one.  ``move_file`` (a
run's log) renames the file into place and leaves the flush to ``sync``, which the recorder calls
before it writes the execution documents naming those logs: one ``syncfs`` for all of them.  The version token is
the file's modification time (ns), size and inode number: a rewrite always makes a new inode.
A delete also removes the directories it leaves empty, up to the base directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat as stat_mode
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from libdcron.abc import ObjectInfo, ObjectStore
from libdcron.errors import NotFoundError, ValidationError
from libdcron.hookspecs import hookimpl
from libdcron.object_base import FsspecObjectStore

__all__ = ["LocalObjectStore", "dcron_object_store"]

#: Files ``move_file`` renames in before it flushes them itself, unless ``sync`` came first.
MAX_UNSYNCED = 4096


class LocalObjectStore(FsspecObjectStore):
    """Objects as files, written atomically; ``base_url`` is ``file:///dir``."""

    bucketed = False

    def __init__(self, base_url: str) -> None:
        super().__init__(LocalFileSystem(auto_mkdir=True), base_url, "file")
        self._moved: list[str] = []  # renamed in by move_file, not flushed yet
        self._moved_lock = threading.Lock()

    def path_of(self, url: str) -> str:
        rest = super().path_of(url).removeprefix("localhost")
        if not rest.startswith("/"):
            raise ValidationError(
                f"{url!r} is not an absolute file URL: write file:///absolute/path "
                "(three slashes; a host other than localhost is not supported)"
            )
        return rest

    def move_file(self, local_path: str, url: str) -> None:
        """Rename ``local_path`` into place when it lies on the same file system, else upload and
        remove it.  A renamed file is durable once :meth:`sync` returns (one flush of the file
        system for every file moved meanwhile instead of an ``fsync`` each: at hundreds of runs
        a second the ``fsync`` of each log was a fifth of a worker's time)."""
        path = self.path_of(url)
        try:
            try:
                os.rename(local_path, path)
            except FileNotFoundError:  # its folder is new (the first log of a job): make it
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.rename(local_path, path)
        except OSError:
            super().move_file(local_path, url)
            return
        with self._moved_lock:
            self._moved.append(path)
            overdue = len(self._moved) >= MAX_UNSYNCED
        if overdue:  # a caller that never syncs still gets its files flushed
            self.sync()

    def sync(self) -> None:
        """Flush the files moved in since the last call, and their folders, to disk: one
        ``syncfs`` of the file system they are on, else an ``fsync`` of each."""
        with self._moved_lock:
            moved, self._moved = self._moved, []
        if not moved:
            return
        if _syncfs(moved[0]):
            return
        for path in moved:
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile (retention)
                _fsync(path)
        for directory in {os.path.dirname(p) for p in moved}:
            with contextlib.suppress(OSError):
                _fsync(directory)

    def _upload(self, path: str, write: Callable[[str], None]) -> None:
        directory, name = os.path.split(path)
        tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            super()._upload(tmp, write)
            _fsync(tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
            _fsync(directory)

    def delete(self, url: str) -> None:
        """Remove the file, then its directories that became empty, up to the base directory
        (a run's log lives alone in ``logs/JOB/FIRE_TIME/``; its folder goes with it)."""
        super().delete(url)
        base = self.path_of(self.base_url + "/x")[: -len("/x")]
        directory = os.path.dirname(self.path_of(url))
        while directory.startswith(base + "/"):
            try:
                os.rmdir(directory)  # only an empty one; a writer's new file keeps it
            except OSError:
                return
            directory = os.path.dirname(directory)

    def stat(self, url: str) -> ObjectInfo:
        path = self.path_of(url)
        with self._translated("looking up", url):
            st = os.stat(path)
        if not stat_mode.S_ISREG(st.st_mode):
            raise NotFoundError(f"no object at {url} (it is not a regular file)")
        return ObjectInfo(size=st.st_size, version=_version(st))

    def version_of(self, path: str, info: Mapping[str, Any]) -> str:
        return _version(os.stat(path))


def _version(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_size:x}-{st.st_ino:x}"


@hookimpl
def dcron_object_store(url: str, options: Mapping[str, Any]) -> ObjectStore | None:
    """A :class:`LocalObjectStore` for ``file://`` URLs."""
    if not url.lower().startswith("file://"):
        return None
    return LocalObjectStore(url)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):  # not Linux, or a C library without it
        return None
    return function


_SYNCFS = _load_syncfs()


def _syncfs(path: str) -> bool:
    """Flush the whole file system that holds ``path`` (Linux ``syncfs``); False when this host
    cannot (then the caller flushes file by file)."""
    if _SYNCFS is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return _SYNCFS(fd) == 0
    finally:
        os.close(fd)


def _fsync(path: str) -> None:
    """Flush the file or folder ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
