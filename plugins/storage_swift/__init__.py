"""The ``swift://`` object store: OpenStack Swift through python-swiftclient.

URL form: ``swift://container/prefix``; objects are ``swift://container/prefix/key``.  The
container is created on the first write that finds it missing.  Files larger than the segment
size are uploaded as Static Large Objects (segments in ``<container>_segments``).  The
filesystem itself is :class:`~dcron_plugins.storage_swift.fs.SwiftFileSystem`, registered with
fsspec as ``swift`` (``fsspec.filesystem("swift")`` reads the credentials from the environment).

Credentials come from the environment (auth v1: ``ST_AUTH``, ``ST_USER``, ``ST_KEY``; Keystone v3:
``OS_AUTH_URL``, ``OS_USERNAME``, ``OS_PASSWORD``, ``OS_PROJECT_NAME``, ``OS_USER_DOMAIN_NAME``,
``OS_PROJECT_DOMAIN_NAME``, ``OS_REGION_NAME``) unless options (``[node.options]``) give them:

=============================  ===============================================================
``swift_auth_url``             auth endpoint (``.../auth/v1.0`` means v1, else Keystone v3)
``swift_user``, ``swift_key``  user (v1: ``account:user``) and key or password
``swift_auth_version``         ``1`` or ``3`` (default: guessed from the URL, see above)
``swift_project_name``,        Keystone project and domains (domains default to ``Default``)
``swift_project_id``,
``swift_user_domain_name``,
``swift_project_domain_name``
``swift_region_name``          Keystone catalog region
``swift_storage_url``,         a ready storage URL and token instead of authenticating
``swift_auth_token``
``swift_segment_size``         bytes; larger files are segmented (default 64 MiB)
``swift_retries``              retries per request, backoff from 1 s doubling (default 3)
``swift_timeout``              seconds to connect and per read (default 30)
``swift_insecure``             skip TLS certificate checks (default false)
=============================  ===============================================================

The version token is the object's ETag (for a segmented object, the Static Large Object's ETag,
derived from its segments' MD5s).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fsspec

from libdcron.abc import ObjectStore
from libdcron.errors import ValidationError
from libdcron.hookspecs import hookimpl
from libdcron.object_base import FsspecObjectStore
from libdcron.options import flag_option, integer_option, number_option

from .fs import DEFAULT_SEGMENT_SIZE, SwiftFileSystem

__all__ = ["SwiftFileSystem", "SwiftObjectStore", "dcron_object_store", "make_filesystem"]

fsspec.register_implementation("swift", SwiftFileSystem, clobber=True)

#: Options passed as strings to SwiftFileSystem, by option name.
_STRING_OPTIONS = {
    "swift_auth_url": "auth_url",
    "swift_user": "user",
    "swift_key": "key",
    "swift_auth_version": "auth_version",
    "swift_project_name": "project_name",
    "swift_project_id": "project_id",
    "swift_user_domain_name": "user_domain_name",
    "swift_project_domain_name": "project_domain_name",
    "swift_region_name": "region_name",
    "swift_storage_url": "storage_url",
    "swift_auth_token": "auth_token",
}


def make_filesystem(options: Mapping[str, Any]) -> SwiftFileSystem:
    """A :class:`SwiftFileSystem` configured from ``options`` and the environment."""
    kwargs: dict[str, Any] = {
        arg: str(options[name]) for name, arg in _STRING_OPTIONS.items() if options.get(name)
    }
    try:
        return SwiftFileSystem(
            segment_size=integer_option(options, "swift_segment_size", DEFAULT_SEGMENT_SIZE, 1),
            retries=integer_option(options, "swift_retries", 3, 0),
            timeout=number_option(options, "swift_timeout", 30, 0.001),
            insecure=flag_option(options, "swift_insecure", False),
            skip_instance_cache=True,
            **kwargs,
        )
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


class SwiftObjectStore(FsspecObjectStore):
    """Objects under ``swift://container/prefix``."""

    fs: SwiftFileSystem
    bucket_term = "container"

    def __init__(self, base_url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(make_filesystem(options or {}), base_url, "swift")


@hookimpl
def dcron_object_store(url: str, options: Mapping[str, Any]) -> ObjectStore | None:
    """A :class:`SwiftObjectStore` for ``swift://`` URLs."""
    if not url.lower().startswith("swift://"):
        return None
    return SwiftObjectStore(url, options)
