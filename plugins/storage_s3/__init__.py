"""The ``s3://`` object store, over s3fs: AWS S3 or any S3 API (moto, Ceph, s3rver...).

URL form: ``s3://bucket/prefix``; objects are ``s3://bucket/prefix/key``.  The bucket is created
on the first write that finds it missing.

Credentials come the usual AWS ways (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ``~/.aws/credentials``, instance roles...).  Options (from ``[node.options]``)
override them:

==========================  ==================================================================
``s3_endpoint_url``         a non-AWS endpoint, e.g. ``http://127.0.0.1:9000``; also read from
                            the environment variable ``DCRON_S3_ENDPOINT_URL``
``s3_region``               region of the client and of created buckets (else ``AWS_REGION`` /
                            ``AWS_DEFAULT_REGION`` / the AWS config)
``s3_profile``              a profile of the AWS config files
``s3_access_key_id``,       explicit credentials
``s3_secret_access_key``
``s3_part_size``            multipart part size in bytes (default 8 MiB, at least 5 MiB); files
                            of up to two parts go in one request
``s3_max_concurrency``      parts in flight at once (default 2); memory used by a transfer is
                            about ``s3_part_size * s3_max_concurrency``
``s3_connect_timeout``      seconds (default 5)
``s3_read_timeout``         seconds (default 60)
``s3_retries``              attempts per request, the first included (default 3)
==========================  ==================================================================

The version token is the object's ETag (the MD5 of its content for simple uploads): rewriting an
object with different content changes it; rewriting the same bytes may not.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from aiobotocore.session import AioSession
from s3fs import S3FileSystem

from libdcron.abc import ObjectStore
from libdcron.hookspecs import hookimpl
from libdcron.object_base import FsspecObjectStore
from libdcron.options import integer_option, number_option

__all__ = ["S3ObjectStore", "dcron_object_store", "make_filesystem"]

MiB = 2**20
#: S3's smallest part (except the last one).
MIN_PART_SIZE = 5 * MiB
DEFAULT_PART_SIZE = 8 * MiB
ENDPOINT_ENV = "DCRON_S3_ENDPOINT_URL"


def _region(options: Mapping[str, Any]) -> str | None:
    region = options.get("s3_region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return str(region) if region else None


def _no_expect_continue(params: dict[str, Any], **kwargs: Any) -> None:
    """Send bodies without ``Expect: 100-continue``.

    botocore asks for it on every upload; aiohttp then waits for the ``100 Continue`` with no
    timeout at all, so an endpoint that accepts connections and never answers would hang a write
    forever.  Without it the read timeout applies.
    """
    headers = params.get("headers")
    if headers:
        headers.pop("Expect", None)


def make_filesystem(options: Mapping[str, Any]) -> S3FileSystem:
    """An s3fs filesystem configured from ``options`` (see the module documentation)."""
    retries = integer_option(options, "s3_retries", 3, minimum=1)
    config: dict[str, Any] = {
        "connect_timeout": number_option(options, "s3_connect_timeout", 5),
        "read_timeout": number_option(options, "s3_read_timeout", 60),
        "retries": {"total_max_attempts": retries, "mode": "standard"},
    }
    # The region goes into botocore's Config, never into client_kwargs: s3fs would then send it
    # as the LocationConstraint of every bucket it creates, which us-east-1 rejects.
    if options.get("s3_region"):
        config["region_name"] = str(options["s3_region"])
    client: dict[str, Any] = {}
    endpoint = options.get("s3_endpoint_url") or os.environ.get(ENDPOINT_ENV)
    if endpoint:
        client["endpoint_url"] = str(endpoint)
    session = AioSession(profile=str(options["s3_profile"])) if options.get("s3_profile") else AioSession()
    session.register("before-call.s3", _no_expect_continue, unique_id="dcron-no-expect-continue")
    kwargs: dict[str, Any] = {"session": session}
    if options.get("s3_access_key_id"):
        kwargs["key"] = str(options["s3_access_key_id"])
        kwargs["secret"] = str(options.get("s3_secret_access_key") or "")
    fs = S3FileSystem(
        client_kwargs=client,
        config_kwargs=config,
        max_concurrency=integer_option(options, "s3_max_concurrency", 2, minimum=1),
        use_listings_cache=False,
        skip_instance_cache=True,
        **kwargs,
    )
    fs.retries = retries  # s3fs's own retry loop (for throttling and dropped reads)
    return fs


class S3ObjectStore(FsspecObjectStore):
    """Objects under ``s3://bucket/prefix``."""

    def __init__(self, base_url: str, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        part_size = integer_option(options, "s3_part_size", DEFAULT_PART_SIZE, minimum=MIN_PART_SIZE)
        self.region = _region(options)
        super().__init__(
            make_filesystem(options),
            base_url,
            "s3",
            put_options={"chunksize": part_size},
            get_options={"chunksize": part_size},
        )

    def _make_parents(self, path: str) -> None:
        bucket = path.split("/", 1)[0]
        kwargs: dict[str, Any] = {}
        if self.region and self.region != "us-east-1":  # us-east-1 takes no LocationConstraint
            kwargs["region_name"] = self.region
        with contextlib.suppress(FileExistsError):  # another writer created it meanwhile
            self.fs.mkdir(bucket, create_parents=True, **kwargs)


@hookimpl
def dcron_object_store(url: str, options: Mapping[str, Any]) -> ObjectStore | None:
    """An :class:`S3ObjectStore` for ``s3://`` URLs."""
    if not url.lower().startswith("s3://"):
        return None
    return S3ObjectStore(url, options)
