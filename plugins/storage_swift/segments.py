"""Static Large Objects: segmented uploads of big files, and clean-up of the old segments.

A file larger than the segment size is uploaded in segments to ``<container>_segments`` under
``<object>/slo/<upload id>/`` (at most :data:`MAX_SEGMENTS` of them: larger files get larger
segments), each streamed from the file, then a manifest is written at the object's own name.  When
an upload fails, its segments are deleted.  Overwriting or deleting a large object deletes its old
segments afterwards; a segment that cannot be deleted is logged and left (it costs space only).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from fsspec.callbacks import Callback

from .base import SwiftFileSystemBase

log = logging.getLogger(__name__)

__all__ = ["MAX_SEGMENTS", "SegmentedUploads", "at_offset"]

#: Swift's default ``max_manifest_segments``; larger files get larger segments.
MAX_SEGMENTS = 1000


def at_offset(f: Any, offset: int) -> Any:
    """``f`` positioned at ``offset`` (swiftclient rewinds to that position when it retries)."""
    f.seek(offset)
    return f


class SegmentedUploads(SwiftFileSystemBase):
    """Uploading a file as a Static Large Object, and finding and deleting an object's segments."""

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
                        seg_container, name, contents=at_offset(f, offset), content_length=length
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
