"""An :class:`~libdcron.abc.ObjectStore` over any fsspec filesystem.

The storage plugins (``file://``, ``s3://``, ``swift://``) are thin: each builds an fsspec
filesystem and hands it to :class:`FsspecObjectStore`, which holds what they share:

* the mapping between URLs and filesystem paths (:meth:`FsspecObjectStore.path_of`),
* streaming uploads and downloads (``fs.put_file`` / ``fs.get_file``; a download lands in a
  temporary file next to its target and is renamed into place, so a half-done download never
  shows under the target's name),
* ranged reads with exact boundaries,
* deletes, for which a missing object is no error,
* the version token of :meth:`~libdcron.abc.ObjectStore.stat`,
* creating the bucket or container (or parent directories) on the first write that needs it,
* reading the plugins' numeric options (:func:`number_option`, from :mod:`libdcron.options`).

Error handling: ``FileNotFoundError`` becomes :class:`~libdcron.errors.NotFoundError`; every other
failure to reach or use the backing service (``OSError`` and its subclasses such as
``ConnectionError``, ``TimeoutError`` and ``PermissionError``; botocore, aiohttp and swiftclient
errors) becomes :class:`~libdcron.errors.UnavailableError`, whose message names the URL, the
operation and the cause.  Programming errors (``TypeError``...) are not translated.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from fsspec import AbstractFileSystem

from .abc import ObjectInfo, ObjectStore
from .errors import DcronError, NotFoundError, UnavailableError, ValidationError
from .options import number_option  # the plugins' numeric options, parsed in one place

log = logging.getLogger(__name__)

__all__ = ["FsspecObjectStore", "number_option", "unavailable_errors"]


def unavailable_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean "the backing service cannot be reached or refused us".

    ``OSError`` covers ``ConnectionError``, ``TimeoutError`` (and so fsspec's ``FSTimeoutError``),
    ``PermissionError`` and requests' exceptions; the client libraries' own roots are added when
    they are installed.
    """
    found: list[type[BaseException]] = [OSError]
    with contextlib.suppress(ImportError):
        import botocore.exceptions

        found += [botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError]
    with contextlib.suppress(ImportError):
        import aiohttp

        found.append(aiohttp.ClientError)
    with contextlib.suppress(ImportError):
        import swiftclient.exceptions

        found.append(swiftclient.exceptions.ClientException)
    return tuple(found)


def within(url: str, base: str) -> bool:
    """Whether ``url`` is ``base`` or under it (``s3://b/p/x`` is under ``s3://b/p``, not ``s3://b/px``)."""
    base = base.rstrip("/")
    return url == base or url.startswith(base + "/")


def check_object_url(url: str) -> None:
    """Refuse an object URL with ``.``/``..`` segments, backslashes or NULs, which could leave its store."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise ValidationError(f"{url!r} is not an object URL (scheme://location)")
    lowered = rest.lower()
    segments = rest.split("/")
    if any(seg in (".", "..") for seg in segments) or "\\" in rest or "\0" in rest or "%2e" in lowered:
        raise ValidationError(f"object URL {url!r} may not hold '.' or '..' segments, backslashes or NULs")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text}"


class FsspecObjectStore(ObjectStore):
    """Objects under ``base_url`` on the fsspec filesystem ``fs``.

    ``schemes`` are the URL schemes this store owns (``"s3"``, ``("s3", "s3a")``...); a URL
    ``scheme://rest`` maps to the filesystem path ``rest`` (so ``s3://bucket/key`` is
    ``bucket/key`` and ``file:///tmp/x`` is ``/tmp/x``).  Subclasses override :meth:`path_of`
    for another mapping and :meth:`version_of` for another version token.  ``put_options`` and
    ``get_options`` are passed to ``fs.put_file`` and ``fs.get_file`` (part sizes, concurrency).
    """

    #: Whether the first path segment is a bucket or container (so ``scheme://x`` is no object,
    #: and ``base_url`` must name one).
    bucketed: bool = True
    #: What the service calls that first segment, in messages (``"bucket"``, ``"container"``).
    bucket_term: str = "bucket"

    def __init__(
        self,
        fs: AbstractFileSystem,
        base_url: str,
        schemes: str | Iterable[str],
        put_options: Mapping[str, Any] | None = None,
        get_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.fs = fs
        self.put_options = dict(put_options or {})
        self.get_options = dict(get_options or {})
        self.schemes = (schemes,) if isinstance(schemes, str) else tuple(schemes)
        if not self.schemes:
            raise ValueError("an object store must own at least one URL scheme")
        scheme, sep, rest = base_url.partition("://")
        self.base_url = f"{scheme}{sep}{rest.rstrip('/')}" if rest.rstrip("/") else base_url
        if not self.owns(self.base_url):
            raise ValidationError(f"object store URL {base_url!r} does not start with {self._scheme_list()}")
        if self.bucketed and not self.base_url.partition("://")[2].split("/", 1)[0]:
            term = self.bucket_term
            raise ValidationError(
                f"object store URL {base_url!r} names no {term} ({self.schemes[0]}://{term}/prefix)"
            )
        self._unavailable = unavailable_errors()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    # -- URLs ----------------------------------------------------------------------------------

    def _scheme_list(self) -> str:
        return " or ".join(f"{s}://" for s in self.schemes)

    def owns(self, url: str) -> bool:
        scheme, sep, _ = url.partition("://")
        return bool(sep) and scheme.lower() in self.schemes

    def path_of(self, url: str) -> str:
        """The filesystem path of ``url``; :class:`ValidationError` when this store cannot own it."""
        if not self.owns(url):
            raise ValidationError(f"{url!r} is not an object URL of this store ({self._scheme_list()})")
        path = url.partition("://")[2]
        if not path.strip("/") or path.endswith("/") or (self.bucketed and "/" not in path.strip("/")):
            # "s3://bucket" or "s3://bucket/dir/" name a bucket or a directory, not an object.
            where = "<bucket>/<key>" if self.bucketed else "<path>"
            raise ValidationError(f"{url!r} names no object (expected {self.schemes[0]}://{where})")
        return path

    # -- errors --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self, doing: str, url: str, reading: bool = True) -> Iterator[None]:
        """Turn library exceptions raised while ``doing`` ``url`` into dcron errors.

        When ``reading``, a missing object (or a path through a non-directory) is
        :class:`NotFoundError`; when writing, whatever still fails is :class:`UnavailableError`.
        """
        try:
            yield
        except DcronError:
            raise
        except FileNotFoundError as exc:
            if not reading:
                raise self._unavailable_error(doing, url, exc) from exc
            raise NotFoundError(f"no object at {url}") from exc
        except (IsADirectoryError, NotADirectoryError) as exc:
            if not reading:
                raise self._unavailable_error(doing, url, exc) from exc
            raise NotFoundError(f"no object at {url}: {_describe(exc)}") from exc
        except self._unavailable as exc:
            raise self._unavailable_error(doing, url, exc) from exc

    @staticmethod
    def _unavailable_error(doing: str, url: str, exc: BaseException) -> UnavailableError:
        return UnavailableError(
            f"object store unavailable while {doing} {url}: {_describe(exc)}; "
            "check the endpoint, the credentials and that the service runs"
        )

    # -- writing -------------------------------------------------------------------------------

    def _upload(self, path: str, write: Callable[[str], None]) -> None:
        """Call ``write(path)``; when its bucket, container or directory is missing, create it and
        call ``write(path)`` once more.  Subclasses wrap this for atomic writes."""
        try:
            write(path)
        except FileNotFoundError:
            self._make_parents(path)
            write(path)

    def _make_parents(self, path: str) -> None:
        """Create the bucket, container or directories that ``path`` needs."""
        parent = self.fs._parent(path)
        log.info("creating %s for %s", parent, self.base_url)
        with contextlib.suppress(FileExistsError):  # another writer was quicker
            self.fs.makedirs(parent, exist_ok=True)

    def put_file(self, local_path: str, url: str) -> None:
        path = self.path_of(url)
        if not os.path.isfile(local_path):
            raise NotFoundError(f"cannot upload {local_path} to {url}: no such local file")
        with self._translated("uploading to", url, reading=False):
            self._upload(path, lambda target: self.fs.put_file(local_path, target, **self.put_options))

    def put_bytes(self, data: bytes, url: str) -> None:
        path = self.path_of(url)
        with self._translated("uploading to", url, reading=False):
            self._upload(path, lambda target: self.fs.pipe_file(target, bytes(data)))

    # -- deleting ------------------------------------------------------------------------------

    def delete(self, url: str) -> None:
        """``fs.rm_file``; a missing object, bucket or container is no error."""
        path = self.path_of(url)
        with self._translated("deleting", url, reading=False):
            try:
                self.fs.rm_file(path)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return  # no object there (a "directory" is none either)

    # -- reading -------------------------------------------------------------------------------

    def get_file(self, url: str, local_path: str) -> None:
        path = self.path_of(url)
        parent = os.path.dirname(os.path.abspath(local_path))
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(local_path)}.part-{uuid.uuid4().hex[:12]}")
        try:
            with self._translated("downloading", url):
                self.fs.get_file(path, tmp, **self.get_options)
            if not os.path.exists(tmp):
                # Some filesystems write nothing for an empty object, or for a "directory".
                self.stat(url)
                open(tmp, "wb").close()
            os.replace(tmp, local_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def read_range(self, url: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValidationError(f"bad range of {url}: offset {offset} and length {length} must be >= 0")
        path = self.path_of(url)
        if length == 0:
            self.stat(url)  # NotFoundError when absent, as for any other read
            return b""
        with self._translated("reading", url):
            try:
                data = self.fs.cat_file(path, start=offset, end=offset + length)
            except OSError as exc:
                # S3 answers 416 (surfacing as EINVAL) for a range that starts at or past the end.
                if exc.errno != errno.EINVAL or isinstance(exc, FileNotFoundError):
                    raise
                if offset < self.stat(url).size:
                    raise
                return b""
        return bytes(data[:length])

    def stat(self, url: str) -> ObjectInfo:
        path = self.path_of(url)
        with self._translated("looking up", url):
            info = self.fs.info(path)
        if info.get("type") != "file":
            raise NotFoundError(f"no object at {url} (it is a {info.get('type') or 'non-object'})")
        return ObjectInfo(size=int(info.get("size") or 0), version=self.version_of(path, info))

    def version_of(self, path: str, info: Mapping[str, Any]) -> str:
        """The version token of an object from its ``fs.info``: the ETag when there is one (S3,
        Swift), else modification time and size."""
        for key in ("ETag", "etag", "Etag"):
            etag = info.get(key)
            if etag:
                return str(etag).strip('"')
        mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or ""
        return f"{mtime}-{info.get('size')}"
